"""Training throughput (samples/s) of a method on the CPU, at its synthetic config and at ViT-B/16 size.

A step is forward + backward + Adam on a batch collated from the synthetic dataset by the training
collator (image processing, augmentation, tokenisation); collation is timed separately.

    python benchmarks/bench_training.py [--method clip_reid] [--steps 10] [--vit-batch 8]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import yaml
from transformers import CLIPConfig

from tireid_hf.data import load_tireid_dataset
from tireid_hf.data.collators import TrainingCollator, add_word_spans, caption_pairs
from tireid_hf.modeling import METHODS
from tireid_hf.processing import TIReIDProcessor, TrainingImageAugmentation


def measure(model, collator, pairs, batch_size: int, steps: int) -> tuple[float, float]:
    """Median seconds of one collation and of one optimizer step."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()
    collate_times, step_times = [], []
    for step in range(steps + 1):
        start = time.perf_counter()
        batch = collator([pairs[(step * batch_size + i) % len(pairs)] for i in range(batch_size)], seed=step)
        collate_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        step_times.append(time.perf_counter() - start)
    return statistics.median(collate_times[1:]), statistics.median(step_times[1:])  # first step: warm-up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", default="clip_reid", choices=sorted(METHODS))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--vit-batch", type=int, default=8)
    args = parser.parse_args()

    synthetic = yaml.safe_load(open(f"configs/{args.method}_synthetic.yaml"))
    config_class, model_class = METHODS[args.method]
    dataset = load_tireid_dataset("synthetic")["train"]
    num_ids = len(set(dataset["pid"]))
    setups = {
        "synthetic config": (config_class(**{**synthetic["model_config"], "num_ids": num_ids}),
                             synthetic["per_device_train_batch_size"]),
        "ViT-B/16, 384x128": (config_class(clip_config=CLIPConfig(vision_config={"patch_size": 16}).to_dict(),
                                           num_ids=num_ids), args.vit_batch),
    }
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(f"| {args.method} | batch | collate ms | step ms | samples/s (step) | samples/s (collate + step) |")
    print("|---|---|---|---|---|---|")
    for name, (config, batch_size) in setups.items():
        torch.manual_seed(0)
        model = model_class(config)
        split = add_word_spans(dataset) if model.text_transforms else dataset
        processor = TIReIDProcessor.for_image_size(config.image_size)
        collator = TrainingCollator(split, processor, config, model.text_transforms, TrainingImageAugmentation())
        pairs, _ = caption_pairs(split)
        collate, step = measure(model, collator, pairs, batch_size, args.steps)
        print(f"| {name} | {batch_size} | {collate * 1000:.0f} | {step * 1000:.0f} | {batch_size / step:.1f} | "
              f"{batch_size / (collate + step):.1f} |")


if __name__ == "__main__":
    main()
