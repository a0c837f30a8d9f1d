"""Training cost of each method on the CPU: samples per second and peak memory, per training stage,
at the zoo's synthetic config and at ViT-B/16 size.

A step is forward + backward + Adam on a batch collated from the synthetic dataset by the training
collator (image processing, augmentation, tokenisation, the method's text transforms); collation is
timed separately; the first step of each stage is a warm-up and is not timed. Every (method, setup,
stage) runs in a fresh process, one after the other, with the same torch threads.

Memory (Linux): the process's peak resident memory during the stage's steps (``VmHWM``, reset
through ``/proc/self/clear_refs`` when the stage starts) and that peak minus the resident memory
just before the steps (model, data and collator already loaded): the second figure is what
training adds — activations, gradients and optimizer state — the part that grows with the batch.

    python benchmarks/bench_training.py [--methods clip_reid uit] [--setups synthetic vit-b16]
        [--steps 10] [--vit-steps 3] [--vit-batch 8] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers import CLIPConfig

from tireid_hf.data import load_tireid_dataset
from tireid_hf.data.collators import TrainingCollator, add_word_spans, caption_pairs
from tireid_hf.modeling import METHODS
from tireid_hf.processing import TIReIDProcessor, TrainingImageAugmentation
from tireid_hf.training.arguments import parse_training_arguments
from tireid_hf.training.loop import build_model as build_training_model

REPO = Path(__file__).resolve().parents[1]
SETUPS = {"synthetic": "synthetic config (tiny CLIP, 96x32)", "vit-b16": "ViT-B/16, 384x128"}


def memory_mib(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process from /proc/self/status, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field} line (this benchmark needs Linux)")


def reset_peak_memory() -> None:
    """Make ``VmHWM`` start again from the current resident memory (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def measure_stage(model, collator, pairs, batch_size: int, steps: int) -> dict:
    """Median collation and step seconds over ``steps`` steps after one warm-up step, and memory."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()
    reset_peak_memory()
    resident = memory_mib("VmRSS")
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
    collate, step_seconds = statistics.median(collate_times[1:]), statistics.median(step_times[1:])
    peak = memory_mib("VmHWM")
    return {"batch": batch_size, "collate_ms": collate * 1000, "step_ms": step_seconds * 1000,
            "samples_per_second": batch_size / (collate + step_seconds),
            "trainable_parameters_m": sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
            "peak_rss_mib": peak, "training_mib": peak - resident}


def synthetic_arguments(method: str):
    """``train.py``'s parsed arguments ``(model, data, training)`` of ``configs/<method>_synthetic.yaml``."""
    return parse_training_arguments(["--config", str(REPO / "configs" / f"{method}_synthetic.yaml")])


def build_model(method: str, setup: str, num_ids: int):
    """The model timed at ``setup`` (seeded): at "synthetic", the one ``train.py`` trains from the method's
    synthetic config (its ``model_config`` around its CLIP base, ``bases/clip-synthetic``); at "vit-b16",
    the method's default heads around a random CLIP ViT-B/16."""
    torch.manual_seed(0)
    if setup == "synthetic":  # train.py's own build_model (the config's CLIP path is relative to the repository)
        return build_training_model(synthetic_arguments(method)[0], num_ids)
    config_class, model_class = METHODS[method]
    return model_class(config_class(clip_config=CLIPConfig(vision_config={"patch_size": 16}).to_dict(), num_ids=num_ids))


def measure(method: str, setup: str, stage_index: int, steps: int, batch_size: int | None) -> dict:
    """Stage ``stage_index`` of ``method`` at ``setup``, in this process; the earlier stages are
    entered (LCR²S's student needs its frozen teacher) but not trained. Also returns the number of
    stages under ``"num_stages"``."""
    dataset = load_tireid_dataset("synthetic")["train"]
    model = build_model(method, setup, num_ids=len(set(dataset["pid"])))
    config = model.config
    if setup == "synthetic":
        batch_size = batch_size or synthetic_arguments(method)[2].per_device_train_batch_size
    split = add_word_spans(dataset) if model.text_transforms else dataset
    collator = TrainingCollator(split, TIReIDProcessor.for_image_size(config.image_size), config,
                                model.text_transforms, TrainingImageAugmentation())
    pairs, _ = caption_pairs(split)
    stages = model.training_stages()
    for stage in stages[:stage_index + 1]:
        model.start_stage(stage)
    return {"method": method, "setup": setup, "stage": stages[stage_index], "num_stages": len(stages),
            **measure_stage(model, collator, pairs, batch_size, steps)}


def run_all(methods, setups, steps: int, vit_steps: int, vit_batch: int) -> list[dict]:
    """Each (method, setup, stage) in a fresh process, so that memory one stage freed (but the
    allocator kept) does not hide what the next one needs."""
    rows = []
    for method in methods:
        for setup in setups:
            stage_index, num_stages = 0, 1
            while stage_index < num_stages:
                arguments = ["--child", method, setup, str(stage_index), str(steps if setup == "synthetic" else vit_steps)]
                if setup == "vit-b16":
                    arguments.append(str(vit_batch))
                completed = subprocess.run([sys.executable, __file__, *arguments], capture_output=True, text=True, cwd=REPO)
                if completed.returncode:
                    raise RuntimeError(f"{method} at {setup}, stage {stage_index} failed:\n{completed.stderr[-3000:]}")
                row = json.loads(completed.stdout.strip().splitlines()[-1])
                num_stages = row.pop("num_stages")
                rows.append(row)
                print(f"{method} at {setup}, stage {row['stage']}: measured", file=sys.stderr, flush=True)
                stage_index += 1
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a table, samples/s also relative to clip_reid's first stage at the same setup."""
    base = {row["setup"]: row["samples_per_second"] for row in rows if row["method"] == "clip_reid"}
    lines = ["| method | stage | setup | batch | trainable params (M) | collate ms | step ms | samples/s | "
             "vs clip_reid | peak RSS (MiB) | added by training (MiB) |", "|---" * 11 + "|"]
    for row in sorted(rows, key=lambda row: list(SETUPS).index(row["setup"])):
        ratio = f"{row['samples_per_second'] / base[row['setup']]:.2f}" if row["setup"] in base else "—"
        lines.append(f"| {row['method']} | {row['stage']} | {SETUPS[row['setup']]} | {row['batch']} | "
                     f"{row['trainable_parameters_m']:.2f} | {row['collate_ms']:.0f} | {row['step_ms']:.0f} | "
                     f"{row['samples_per_second']:.1f} | {ratio} | {row['peak_rss_mib']:.0f} | {row['training_mib']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        method, setup, stage_index, steps, *batch = sys.argv[2:]
        print(json.dumps(measure(method, setup, int(stage_index), int(steps), int(batch[0]) if batch else None)))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=sorted(METHODS))
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--steps", type=int, default=10, help="timed steps per stage at the synthetic config")
    parser.add_argument("--vit-steps", type=int, default=3, help="timed steps per stage at ViT-B/16 size")
    parser.add_argument("--vit-batch", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    rows = run_all(args.methods, args.setups, args.steps, args.vit_steps, args.vit_batch)
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
