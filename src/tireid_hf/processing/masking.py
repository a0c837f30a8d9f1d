"""CADA's attribute masking of tokenised captions (the input of its ARA task)."""

from __future__ import annotations

import torch

from ..modeling.configuration_tireid import ATTRIBUTE_MASK_UNITS
from ..modeling.losses import IGNORE_INDEX


def token_positions_of_spans(offsets: list[tuple[int, int]], spans: list[tuple[int, int, str]], kinds) -> list[list[int]]:
    """For each span of ``kinds``, the positions of the BPE tokens overlapping it.

    Args:
        offsets: the tokenizer's ``offset_mapping`` of one caption ((0, 0) for special tokens).
        spans: :func:`tag_word_spans` of that caption.
    Returns: one list of token positions per selected span (spans cut off by truncation give none
    and are left out).
    """
    groups = []
    for start, end, kind in spans:
        if kind not in kinds:
            continue
        positions = [index for index, (token_start, token_end) in enumerate(offsets)
                     if token_end > token_start and token_start < end and token_end > start]
        if positions:
            groups.append(positions)
    return groups


ATTRIBUTE_KINDS = ("noun", "adjective")


def _attribute_chunks(offsets: list[tuple[int, int]], spans: list[tuple[int, int, str]]) -> list[list[tuple[int, int, str]]]:
    """Adjective+noun chunks: maximal runs of ADJACENT attribute words of the pattern ``JJ* NN*``.

    Two words are adjacent when no token of ``offsets`` lies between them (a comma, "and", "with"...
    breaks a chunk); an adjective after a noun starts a new chunk. "a young woman in a black-and-white
    striped shirt" -> [young woman], [black-and-white striped shirt]. (The reference's NLTK grammar
    ``(<JJ><CC>?)*<NN>?<NNS>?`` also lets "and"/"or" join adjectives; word tags alone cannot see
    them, so here a conjunction ends the chunk.)
    """
    def separated(left, right) -> bool:
        return any(end > start and start >= left[1] and end <= right[0] for start, end in offsets)

    chunks: list[list[tuple[int, int, str]]] = []
    for span in spans:
        previous = chunks[-1][-1] if chunks else None
        if previous is None or separated(previous, span) or (previous[2] == "noun" and span[2] == "adjective"):
            chunks.append([span])
        else:
            chunks[-1].append(span)
    return chunks


def mask_attribute_tokens(
    input_ids: list[int],
    offsets: list[tuple[int, int]],
    spans: list[tuple[int, int, str]],
    probability: float,
    mask_token_id: int,
    unit: str = "word",
    generator: torch.Generator | None = None,
) -> tuple[list[int], list[int]]:
    """CADA's attribute masking (ARA input), for one tokenised caption.

    Each attribute unit is masked with ``probability`` (one draw per unit): with ``unit="word"`` every
    noun or adjective of ``spans`` on its own (the reference code, p = 0.4); with ``unit="phrase"``
    every adjective+noun chunk as a whole (the reference's switched-off variant, see
    :func:`_attribute_chunks`). ALL the BPE tokens of a chosen unit are replaced by ``mask_token_id``
    (a word is never half-masked). Special tokens (offset (0, 0)) and words cut off by truncation are
    never masked.

    Args:
        input_ids: token ids of the caption (with its special tokens).
        offsets: the tokenizer's ``offset_mapping`` for those ids.
        spans: :func:`tag_word_spans` of the caption (computed once, at dataset preparation).
        probability: masking probability of a unit, in [0, 1].
        mask_token_id: the replacement id (:data:`tireid_hf.processing.CLIP_MASK_TOKEN_ID`).
        unit: ``"word"`` or ``"phrase"``.
        generator: the random source (for reproducible masks).
    Returns: ``(masked_ids, labels)``, both of ``len(input_ids)``: labels hold the original id at
    masked positions and -100 elsewhere.
    """
    if unit not in ATTRIBUTE_MASK_UNITS:
        raise ValueError(f"unit must be one of {ATTRIBUTE_MASK_UNITS}, got {unit!r}")
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must lie in [0, 1], got {probability}")
    if len(offsets) != len(input_ids):
        raise ValueError(f"offsets ({len(offsets)}) and input_ids ({len(input_ids)}) must have the same length")
    attributes = [span for span in spans if span[2] in ATTRIBUTE_KINDS]
    units = _attribute_chunks(offsets, attributes) if unit == "phrase" else [[span] for span in attributes]
    masked_ids, labels = list(input_ids), [IGNORE_INDEX] * len(input_ids)
    for chunk in units:
        positions = [position for group in token_positions_of_spans(offsets, chunk, ATTRIBUTE_KINDS) for position in group]
        if positions and torch.rand((), generator=generator).item() < probability:
            for position in positions:
                labels[position] = input_ids[position]
                masked_ids[position] = mask_token_id
    return masked_ids, labels
