"""The registry of text transforms: what a method's training batches need beyond images, captions
and identities, declared by name in the model class's ``text_transforms`` and built once here for
the training collator (and the tests' batches).

A transform may rewrite the captions before tokenisation (``rewrite``) and/or add batch inputs after
it (``batch_inputs``, named by ``batch_input_names``: the extra keyword arguments the model's
``compute_losses`` takes). Both read the caption's word spans (``caption_word_spans``, tagged once per
dataset) and draw from the batch's generator; the parameters come from the model config.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .masking import mask_attribute_tokens
from .tagging import key_words_only

Spans = list[tuple[int, int, str]]


class TextTransform:
    """A named text transform (the base does nothing). ``rewrites_captions``: ``rewrite`` changes the
    caption text, so word spans no longer fit it and no other transform may follow it."""

    name: str = ""
    rewrites_captions: bool = False
    batch_input_names: tuple[str, ...] = ()

    def rewrite(self, captions: list[str], spans: list[Spans], config, generator: torch.Generator) -> list[str]:
        """The captions to tokenise (before tokenisation)."""
        return captions

    def batch_inputs(self, captions: list[str], spans: list[Spans], length: int, tokenizer, config,
                     generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Extra batch inputs [N, ...], keyed by ``batch_input_names`` (after tokenisation to ``length``)."""
        return {}


class KeyWordAugmentation(TextTransform):
    """UIT: with probability ``config.key_word_augmentation_probability`` a caption is reduced to its
    nouns, adjectives and pronouns (:func:`~.tagging.key_words_only`); one draw per caption."""

    name = "key_word_augmentation"
    rewrites_captions = True

    def rewrite(self, captions, spans, config, generator):
        keep = torch.rand(len(captions), generator=generator) < config.key_word_augmentation_probability
        return [key_words_only(caption, span) if flag else caption
                for caption, span, flag in zip(captions, spans, keep.tolist())]


class AttributeMasking(TextTransform):
    """CADA: ``masked_input_ids`` / ``masked_labels`` [N, L] from :func:`~.masking.mask_attribute_tokens`
    with the config's ``attribute_mask_probability``, ``attribute_mask_unit`` and ``mask_token_id``."""

    name = "attribute_masking"
    batch_input_names = ("masked_input_ids", "masked_labels")

    def batch_inputs(self, captions, spans, length, tokenizer, config, generator):
        encoding = tokenizer(captions, padding="max_length", truncation=True, max_length=length,
                             return_offsets_mapping=True)
        masked, labels = [], []
        for ids, offsets, caption_spans in zip(encoding["input_ids"], encoding["offset_mapping"], spans):
            ids_masked, ids_labels = mask_attribute_tokens(
                ids, offsets, caption_spans, probability=config.attribute_mask_probability,
                mask_token_id=config.mask_token_id, unit=config.attribute_mask_unit, generator=generator,
            )
            masked.append(ids_masked)
            labels.append(ids_labels)
        return {"masked_input_ids": torch.tensor(masked), "masked_labels": torch.tensor(labels)}


TEXT_TRANSFORMS: dict[str, TextTransform] = {
    transform.name: transform for transform in (KeyWordAugmentation(), AttributeMasking())
}


def build_text_transforms(names: Sequence[str]) -> tuple[TextTransform, ...]:
    """The transforms named by a model class's ``text_transforms``, in order; an error for an unknown
    name or for a caption-rewriting transform combined with another (their word spans would not fit)."""
    unknown = sorted(set(names) - set(TEXT_TRANSFORMS))
    if unknown:
        raise ValueError(f"unknown text transforms {unknown}; known: {sorted(TEXT_TRANSFORMS)}")
    transforms = tuple(TEXT_TRANSFORMS[name] for name in names)
    rewriting = [transform.name for transform in transforms if transform.rewrites_captions]
    if rewriting and len(transforms) > 1:
        others = [transform.name for transform in transforms if transform.name != rewriting[0]]
        raise ValueError(f"{rewriting[0]} rewrites captions, so {', '.join(others)} spans would not fit: use one of them")
    return transforms
