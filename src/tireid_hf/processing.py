"""TIReIDProcessor: CLIP image preprocessing at the model's rectangular size + the CLIP tokenizer.

The processor is saved beside the weights (``save_pretrained``), so nobody hard-codes sizes,
mean/std or the tokenizer again. Training augmentations are a separate, optional transform
(:class:`TrainingImageAugmentation`) applied to the processed pixel tensors.

The CLIP BPE merges ship inside this package (``clip_vocabulary/clip_bpe_merges.txt.gz``: the part of
OpenAI's ``bpe_simple_vocab_16e6.txt.gz`` that CLIP uses, see the NOTE there), so a plain
``pip install tireid-hf`` tokenises; :func:`clip_tokenizer` turns them into a `transformers`
``CLIPTokenizer`` identical to OpenAI CLIP's, with no Hub access.

Part-of-speech tags (CADA masks attribute words, UIT keeps key words) come from TextBlob's
``PatternTagger``: a Brill-style lexicon + contextual-rule tagger (Penn Treebank tags) whose model
files ship INSIDE the textblob wheel, so it runs offline (NLTK's tagger data is a separate download
that is not available here). It tags a caption in ~40 us; :func:`tag_word_spans` is still meant to
run ONCE per caption (at dataset preparation), never per training step.
"""

from __future__ import annotations

import gzip
import math
from functools import lru_cache
from pathlib import Path

import torch
from transformers import CLIPImageProcessorPil, CLIPTokenizer, ProcessorMixin
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

CLIP_TEXT_LENGTH = 77
# The mask token of the IRRA family of CLIP ReID code: its tokenizer keeps one merge fewer than CLIP
# and puts "<|mask|>" at 49405. Our tokenizer keeps that last (very rare) merge, so masking replaces
# tokens by 49405 the same way; no vocabulary change to the pretrained CLIP text encoder is needed.
CLIP_MASK_TOKEN_ID = 49405

# Word kinds and the Penn Treebank tag prefixes that make them.
WORD_KINDS = {"noun": ("NN",), "adjective": ("JJ",), "pronoun": ("PRP",)}
CLIP_BPE_PATH = Path(__file__).resolve().parent / "clip_vocabulary" / "clip_bpe_merges.txt.gz"
_NUM_MERGES = 49152 - 256 - 2  # CLIP keeps the first 48,894 merges of OpenAI's file


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from the 256 byte values to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    characters = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            characters.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, characters)))


@lru_cache(maxsize=1)
def clip_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary (49,408 tokens) and merges, built exactly as OpenAI's ``SimpleTokenizer``:
    byte symbols, the same with ``</w>``, one token per merge, then the two special tokens."""
    with gzip.open(CLIP_BPE_PATH, "rt", encoding="utf-8") as file:
        lines = file.read().split("\n")[1 : _NUM_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    if len(merges) != _NUM_MERGES or any(len(merge) != 2 for merge in merges):
        raise RuntimeError(f"{CLIP_BPE_PATH}: expected {_NUM_MERGES} merges of two symbols each; the file is damaged")
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [symbol + "</w>" for symbol in symbols] + ["".join(merge) for merge in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}, merges


def clip_tokenizer(model_max_length: int = CLIP_TEXT_LENGTH) -> CLIPTokenizer:
    """OpenAI CLIP's tokenizer (lower-cased BPE, ``<|startoftext|>`` ... ``<|endoftext|>``, padded
    with ``<|endoftext|>``), built offline from the merges shipped in this package."""
    vocabulary, merges = clip_vocabulary()
    return CLIPTokenizer(vocab=dict(vocabulary), merges=list(merges), model_max_length=model_max_length)


class TIReIDProcessor(ProcessorMixin):
    """CLIP image processor at (height, width) without centre crop + CLIP tokenizer.

    ``processor(text=[...])`` gives ``input_ids``/``attention_mask`` padded to the longest caption and
    TRUNCATED to ``tokenizer.model_max_length`` (77) tokens, the end-of-text token kept;
    ``processor(images=[...])`` gives ``pixel_values`` [N, 3, height, width].
    """

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        super().__init__(image_processor, tokenizer)

    @classmethod
    def for_image_size(cls, image_size: tuple[int, int] = (384, 128), tokenizer: CLIPTokenizer | None = None):
        """A processor for ``image_size`` (height, width) with CLIP's mean/std and bicubic resize."""
        height, width = image_size
        image_processor = CLIPImageProcessorPil(
            size={"height": height, "width": width}, do_center_crop=False,
            image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD,
        )
        return cls(image_processor=image_processor, tokenizer=tokenizer or clip_tokenizer())

    def __call__(self, text=None, images=None, return_tensors="pt", **kwargs):
        if text is None and images is None:
            raise ValueError("TIReIDProcessor needs `text`, `images` or both")
        encoding = {}
        if text is not None:
            texts = [text] if isinstance(text, str) else list(text)
            empty = [index for index, caption in enumerate(texts) if not isinstance(caption, str) or not caption.strip()]
            if empty:
                raise ValueError(f"text: captions must be non-empty strings; got empty or non-string captions at positions {empty[:10]}")
            encoding.update(self.tokenizer(
                texts, padding=kwargs.pop("padding", True), truncation=True,
                max_length=self.tokenizer.model_max_length, return_tensors=return_tensors,
            ))
        if images is not None:
            encoding.update(self.image_processor(images=images, return_tensors=return_tensors))
        return encoding

    @property
    def image_size(self) -> tuple[int, int]:
        size = self.image_processor.size
        return size["height"], size["width"]


class TrainingImageAugmentation:
    """Training-time augmentation of processed pixel tensors [3, H, W] (IRRA's recipe):
    horizontal flip (p=0.5), zero-pad by ``padding`` then random crop back to (H, W), random erasing
    (p=0.5, area 2%-40%, aspect 0.3-3.3, erased pixels set to 0 = the normalised mean).

    Pure torch (there is no CPU torchvision here); draws from ``generator`` when given.
    """

    def __init__(self, padding: int = 10, flip_probability: float = 0.5, erase_probability: float = 0.5,
                 erase_area: tuple[float, float] = (0.02, 0.4), erase_aspect: tuple[float, float] = (0.3, 3.3)):
        self.padding = padding
        self.flip_probability = flip_probability
        self.erase_probability = erase_probability
        self.erase_area = erase_area
        self.erase_aspect = erase_aspect

    def __call__(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if pixels.dim() != 3:
            raise ValueError(f"expected one image [3, H, W], got shape {list(pixels.shape)}")
        _, height, width = pixels.shape

        def uniform(low: float = 0.0, high: float = 1.0) -> float:
            return low + (high - low) * torch.rand((), generator=generator).item()

        if uniform() < self.flip_probability:
            pixels = pixels.flip(-1)
        if self.padding:
            padded = torch.nn.functional.pad(pixels, [self.padding] * 4)
            top = int(torch.randint(0, 2 * self.padding + 1, (), generator=generator))
            left = int(torch.randint(0, 2 * self.padding + 1, (), generator=generator))
            pixels = padded[:, top : top + height, left : left + width]
        else:
            pixels = pixels.clone()
        if uniform() < self.erase_probability:
            for _ in range(10):  # as torchvision's RandomErasing: up to 10 tries to fit a box
                area = uniform(*self.erase_area) * height * width
                aspect = math.exp(uniform(math.log(self.erase_aspect[0]), math.log(self.erase_aspect[1])))
                box_height, box_width = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
                if box_height < height and box_width < width:
                    top = int(torch.randint(0, height - box_height + 1, (), generator=generator))
                    left = int(torch.randint(0, width - box_width + 1, (), generator=generator))
                    pixels[:, top : top + box_height, left : left + box_width] = 0
                    break
        return pixels


@lru_cache(maxsize=1)
def _pattern_tagger():
    from textblob.en.taggers import PatternTagger

    return PatternTagger()


def tag_word_spans(caption: str) -> list[tuple[int, int, str]]:
    """Character spans of the nouns, adjectives and pronouns of ``caption``.

    Returns ``[(start, end, kind), ...]`` in caption order, ``caption[start:end]`` the word and
    ``kind`` one of :data:`WORD_KINDS` (``noun`` for NN/NNS/NNP/NNPS, ``adjective`` for JJ/JJR/JJS,
    ``pronoun`` for PRP/PRP$). Other words are not listed.
    """
    spans, cursor = [], 0
    for word, tag in _pattern_tagger().tag(caption):
        start = caption.find(word, cursor)
        if start < 0:  # the tagger normalised the token (e.g. quotes): skip it, keep the cursor
            continue
        cursor = start + len(word)
        kind = next((name for name, prefixes in WORD_KINDS.items() if tag.startswith(prefixes)), None)
        if kind is not None:
            spans.append((start, cursor, kind))
    return spans


def key_words_only(caption: str, spans: list[tuple[int, int, str]], kinds=("noun", "adjective", "pronoun")) -> str:
    """The caption reduced to its words of ``kinds`` (UIT's text augmentation), in order, space-joined.

    Returns the caption unchanged when it has no such word (an empty caption is never produced).
    """
    words = [caption[start:end] for start, end, kind in spans if kind in kinds]
    return " ".join(words) if words else caption


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
ATTRIBUTE_MASK_UNITS = ("word", "phrase")
IGNORE_INDEX = -100


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
        mask_token_id: the replacement id (:data:`CLIP_MASK_TOKEN_ID`).
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
