"""The training collator with and without its pixel cache, side by side in one run.

    PYTHONPATH=src HF_HUB_OFFLINE=1 python benchmarks/bench_collator.py [--method cada] [--epochs 3] [--repeats 3]

On the protocol's data (``configs/<method>_synthetic.yaml``: its identities, image size and text
transforms, image augmentation on) both collators build the same sequence of batches (64 samples,
``epochs`` passes over every (image, caption) pair in one shuffled order): one with the default cache
(``PIXEL_CACHE_MIB``), one with none (every image decoded and processed on each use, the former
behaviour). Per collator and epoch: milliseconds per batch, median over ``repeats`` interleaved
repeats (each repeat a fresh collator, so its first epoch starts cold); and the bytes the cache holds.
One torch thread. Every batch of the two collators is checked equal.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from tireid_hf.data import load_tireid_dataset
from tireid_hf.data.collators import PIXEL_CACHE_MIB, TrainingCollator, add_word_spans, caption_pairs
from tireid_hf.methods import method_classes
from tireid_hf.processing import TIReIDProcessor, TrainingImageAugmentation

BATCH = 64
REPO = Path(__file__).resolve().parents[1]


def epoch_times(collator: TrainingCollator, batches: list[list[tuple[int, int]]], epochs: int) -> tuple[list[float], list]:
    """Milliseconds per batch of each epoch, and the first epoch's batches (for the equality check)."""
    times, first = [], []
    for epoch in range(epochs):
        started = time.perf_counter()
        for index, samples in enumerate(batches):
            batch = collator(samples, seed=epoch * len(batches) + index)
            if epoch == 0:
                first.append(batch)
        times.append(1000 * (time.perf_counter() - started) / len(batches))
    return times, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="clip_reid")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = yaml.safe_load((REPO / "configs" / f"{args.method}_synthetic.yaml").read_text())
    config_class, model_class = method_classes(args.method)
    model_config = config_class(**config["model_config"])
    split = load_tireid_dataset("synthetic", **config["dataset_options"])["train"]
    if model_class.text_transforms:
        split = add_word_spans(split)
    processor = TIReIDProcessor.for_image_size(tuple(config["model_config"]["image_size"]))
    pairs, _ = caption_pairs(split)
    order = np.random.default_rng(0).permutation(len(pairs))
    batches = [[pairs[i] for i in order[start:start + BATCH]] for start in range(0, len(order) - BATCH + 1, BATCH)]
    results = {"no cache": [], "cache": []}
    cached_bytes = 0
    for _ in range(args.repeats):
        outputs = {}
        for label, mib in (("no cache", 0), ("cache", PIXEL_CACHE_MIB)):
            collator = TrainingCollator(split, processor, model_config, model_class.text_transforms,
                                        TrainingImageAugmentation(), pixel_cache_mib=mib)
            times, outputs[label] = epoch_times(collator, batches, args.epochs)
            results[label].append(times)
            if mib:
                cached_bytes = sum(tensor.element_size() * tensor.nelement() for tensor in collator.pixel_cache.values())
        for a, b in zip(outputs["no cache"], outputs["cache"]):
            assert all(torch.equal(a[key], b[key]) for key in a), "the cached collator's batch differs"
    print(f"{args.method}: {len(split)} images, {len(pairs)} (image, caption) samples, {len(batches)} batches of {BATCH}; "
          f"{platform.machine()}, {os.cpu_count()} cores, 1 torch thread, median of {args.repeats} repeats")
    print("| collator | " + " | ".join(f"epoch {epoch + 1} ms/batch" for epoch in range(args.epochs)) + " | cache MiB |")
    print("|---|" + "---|" * (args.epochs + 1))
    medians = {label: [statistics.median(run[epoch] for run in runs) for epoch in range(args.epochs)]
               for label, runs in results.items()}
    for label, values in medians.items():
        size = f"{cached_bytes / 2**20:.0f}" if label == "cache" else "0"
        print(f"| {label} | " + " | ".join(f"{value:.1f}" for value in values) + f" | {size} |")
    ratios = [a / b for a, b in zip(medians["no cache"], medians["cache"])]
    print("| no cache / cache | " + " | ".join(f"{ratio:.2f}x" for ratio in ratios) + " | |")


if __name__ == "__main__":
    main()
