"""Turning training samples (an image and one of its captions) into model batches."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..processing import TIReIDProcessor, TrainingImageAugmentation, key_words_only, tag_word_spans


def caption_pairs(dataset) -> tuple[list[tuple[int, int]], list[int]]:
    """One training sample per (image row, caption index) of an image-level split, and their pids."""
    pairs, pids = [], []
    for row, (captions, pid) in enumerate(zip(dataset["captions"], dataset["pid"])):
        for caption_index in range(len(captions)):
            pairs.append((row, caption_index))
            pids.append(int(pid))
    return pairs, pids


def add_word_spans(dataset):
    """Adds ``caption_word_spans``: per caption, its noun/adjective/pronoun character spans
    (:func:`tireid_hf.processing.tag_word_spans`), computed ONCE for the text transforms."""

    def tag(batch):
        return {"caption_word_spans": [[[list(span[:2]) + [span[2]] for span in tag_word_spans(caption)]
                                        for caption in captions] for captions in batch["captions"]]}

    return dataset.map(tag, batched=True, desc="part-of-speech tagging")


class TrainingCollator:
    """Builds a training batch from ``(row, caption_index)`` samples of an image-level split.

    Output: ``pixel_values`` [N, 3, H, W] (processed, optionally augmented), ``input_ids`` /
    ``attention_mask`` [N, L], ``pids`` [N], plus what the method's ``text_transforms`` produce:

    * ``key_word_augmentation`` (UIT): with probability ``config.key_word_augmentation_probability``
      a caption is reduced to its nouns, adjectives and pronouns before tokenisation;
    * ``attribute_masking`` (CADA): ``masked_input_ids`` / ``masked_labels`` from
      ``processing.mask_attribute_tokens`` with the config's probability, unit and mask token.

    All randomness is drawn from a generator seeded per batch (``seed`` from the caller), so a batch
    is a pure function of its seed: that is what makes resumed runs identical to uninterrupted ones.
    """

    def __init__(self, dataset, processor: TIReIDProcessor, model_config, text_transforms: Sequence[str] = (),
                 augmentation: TrainingImageAugmentation | None = None):
        known = {"key_word_augmentation", "attribute_masking"}
        unknown = set(text_transforms) - known
        if unknown:
            raise ValueError(f"unknown text transforms {sorted(unknown)}; known: {sorted(known)}")
        if set(text_transforms) == known:
            raise ValueError("key_word_augmentation rewrites captions, so attribute_masking spans would not fit: use one of them")
        if text_transforms and "caption_word_spans" not in dataset.column_names:
            raise ValueError("text transforms need the caption_word_spans column: call add_word_spans(dataset) first")
        self.dataset = dataset
        self.processor = processor
        self.config = model_config
        self.text_transforms = tuple(text_transforms)
        self.augmentation = augmentation

    def __call__(self, samples: Sequence[tuple[int, int]], seed: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        images, captions, spans, pids = [], [], [], []
        for row, caption_index in samples:
            record = self.dataset[int(row)]
            images.append(record["image"])
            captions.append(record["captions"][caption_index])
            spans.append([tuple(span) for span in record["caption_word_spans"][caption_index]]
                         if self.text_transforms else [])
            pids.append(int(record["pid"]))
        if "key_word_augmentation" in self.text_transforms:
            probability = self.config.key_word_augmentation_probability
            keep = torch.rand(len(captions), generator=generator) < probability
            captions = [key_words_only(caption, span) if flag else caption
                        for caption, span, flag in zip(captions, spans, keep.tolist())]
        batch = dict(self.processor(text=captions, images=images))
        if self.augmentation is not None:
            batch["pixel_values"] = torch.stack([self.augmentation(pixels, generator) for pixels in batch["pixel_values"]])
        if "attribute_masking" in self.text_transforms:
            batch.update(self._mask_attributes(captions, spans, batch["input_ids"].shape[1], generator))
        batch["pids"] = torch.tensor(pids, dtype=torch.long)
        return batch

    def _mask_attributes(self, captions, spans, length, generator) -> dict[str, torch.Tensor]:
        from ..processing import mask_attribute_tokens

        tokenizer = self.processor.tokenizer
        encoding = tokenizer(captions, padding="max_length", truncation=True, max_length=length,
                             return_offsets_mapping=True)
        masked, labels = [], []
        for ids, offsets, caption_spans in zip(encoding["input_ids"], encoding["offset_mapping"], spans):
            ids_masked, ids_labels = mask_attribute_tokens(
                ids, offsets, caption_spans, probability=self.config.attribute_mask_probability,
                mask_token_id=self.config.mask_token_id, unit=self.config.attribute_mask_unit, generator=generator,
            )
            masked.append(ids_masked)
            labels.append(ids_labels)
        return {"masked_input_ids": torch.tensor(masked), "masked_labels": torch.tensor(labels)}


def epoch_generator_seed(seed: int, epoch: int, batch_index: int, rank: int) -> int:
    """A distinct, reproducible seed for one batch of one rank."""
    return int(np.random.SeedSequence([seed, epoch, batch_index, rank]).generate_state(1)[0])
