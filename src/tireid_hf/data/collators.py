"""Turning training samples (an image and one of its captions) into model batches."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..processing import TIReIDProcessor, TrainingImageAugmentation, build_text_transforms, tag_word_spans


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


# The most memory a collator (one per loader worker) gives to the processed pixels of its split: the
# synthetic protocol's 4,000 images at 96 x 32 take 141 MiB, so each is decoded and processed once per run
# instead of once per caption and epoch. A split that does not fit is not cached at all: with samples
# drawn at random, a cache of a fraction f of the images saves only a fraction f of the work.
PIXEL_CACHE_MIB = 512


class TrainingCollator:
    """Builds a training batch from ``(row, caption_index)`` samples of an image-level split.

    Output: ``pixel_values`` [N, 3, H, W] (processed, optionally augmented), ``input_ids`` /
    ``attention_mask`` [N, L], ``pids`` [N], plus the batch inputs of the method's ``text_transforms``
    (:mod:`tireid_hf.processing.text_transforms`: UIT's key-word augmentation rewrites captions before
    tokenisation, CADA's attribute masking adds ``masked_input_ids`` / ``masked_labels``), with the
    parameters of ``model_config``.

    When the split's processed pixels (float32 [3, H, W] per image row) fit ``pixel_cache_mib``, each
    image row is decoded and processed once and kept (:meth:`processed_images`); augmentation is applied
    to a copy on every use. Otherwise every use decodes and processes its image.

    All randomness is drawn from a generator seeded per batch (``seed`` from the caller), so a batch
    is a pure function of its seed: that is what makes resumed runs identical to uninterrupted ones.
    """

    def __init__(self, dataset, processor: TIReIDProcessor, model_config, text_transforms: Sequence[str] = (),
                 augmentation: TrainingImageAugmentation | None = None, pixel_cache_mib: float = PIXEL_CACHE_MIB):
        self.transforms = build_text_transforms(text_transforms)
        if self.transforms and "caption_word_spans" not in dataset.column_names:
            raise ValueError("text transforms need the caption_word_spans column: call add_word_spans(dataset) first")
        self.text_rows = dataset.remove_columns("image")  # rows read without decoding their image
        self.image_rows = dataset.select_columns(["image"])
        self.processor = processor
        self.config = model_config
        self.augmentation = augmentation
        height, width = processor.image_size
        fits = len(dataset) * 3 * height * width * 4 <= pixel_cache_mib * 2**20  # float32 pixels
        self.pixel_cache: dict[int, torch.Tensor] | None = {} if fits else None

    def processed_images(self, rows: Sequence[int]) -> list[torch.Tensor]:
        """The processed, un-augmented pixels [3, H, W] of image rows ``rows``: those in the cache from
        it, the others decoded and processed in one call (and cached, when the split fits). The
        processor treats each image alone, so a cached tensor equals a fresh one."""
        cache = self.pixel_cache
        missing = sorted({row for row in rows if cache is None or row not in cache})
        fresh = {}
        if missing:
            pixels = self.processor(images=[self.image_rows[row]["image"] for row in missing])["pixel_values"]
            fresh = dict(zip(missing, pixels))
            if cache is not None:
                cache.update((row, tensor.clone()) for row, tensor in fresh.items())  # not views of the batch
        return [fresh[row] if row in fresh else cache[row] for row in rows]

    def __call__(self, samples: Sequence[tuple[int, int]], seed: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        captions, spans, pids = [], [], []
        for row, caption_index in samples:
            record = self.text_rows[int(row)]
            captions.append(record["captions"][caption_index])
            spans.append([tuple(span) for span in record["caption_word_spans"][caption_index]]
                         if self.transforms else [])
            pids.append(int(record["pid"]))
        for transform in self.transforms:
            captions = transform.rewrite(captions, spans, self.config, generator)
        batch = dict(self.processor(text=captions))
        batch["pixel_values"] = torch.stack(self.processed_images([int(row) for row, _ in samples]))
        if self.augmentation is not None:
            batch["pixel_values"] = torch.stack([self.augmentation(pixels, generator) for pixels in batch["pixel_values"]])
        for transform in self.transforms:
            batch.update(transform.batch_inputs(captions, spans, batch["input_ids"].shape[1], self.processor.tokenizer,
                                                self.config, generator))
        batch["pids"] = torch.tensor(pids, dtype=torch.long)
        return batch


def epoch_generator_seed(seed: int, epoch: int, batch_index: int, rank: int) -> int:
    """A distinct, reproducible seed for one batch of one rank."""
    return int(np.random.SeedSequence([seed, epoch, batch_index, rank]).generate_state(1)[0])
