"""Training cost of each method: samples per second and peak memory, per training stage. Two tables.

**The CPU table** (no ``--device``): at the zoo's synthetic config and at ViT-B/16 size, on the CPU.

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

**The device table** (``--device cuda`` or ``cpu``): every method (LCR²S per stage) at ViT-B/16,
384x128 with random weights, in one process, against IRRA's own training step as the anchor. A step is
forward (under ``torch.autocast(bfloat16)`` with ``--precision bf16``, as Accelerate's
``mixed_precision="bf16"`` runs it; fp32 weights) + backward + Adam, on batches collated before the
timing starts (2 distinct batches, moved to the device once, used in turn): the figure is the
device's, data loading is not in it. Medians over ``--steps`` steps after ``WARMUP`` warm-up steps (the
compilation of ``--compile``, ``model.compile()``, happens in them); the device is synchronised around
every timed step. Peak memory: ``torch.cuda.max_memory_allocated`` since the row started (CUDA), the
process' peak resident memory since the row started (CPU). ``step ÷ IRRA`` = the row's median step time
/ IRRA's at the same batch size.

The anchor is IRRA (github.com/anosorae/IRRA, vendored unmodified in ``benchmarks/reference/irra``): its
``build_model`` — its CLIP at the same size with random weights instead of the downloaded OpenAI ones,
then its ``convert_weights`` to fp16, as IRRA trains — and its ``forward`` with its default losses
``sdm+mlm+id`` (run_irra.sh), the loss summed, backward and Adam (eps 1e-3 as its solver), exactly as
its ``processor.do_train`` steps; never under autocast (its own fp16 step), compiled with ``--compile``.
Its batch is the clip_reid batch in IRRA's layout: 77-token ``caption_ids`` padded with 0, and
``mlm_ids`` / ``mlm_labels`` masked by its dataset's rule (:func:`irra_masked_tokens`).

    python benchmarks/bench_training.py --device cuda --precision bf16 [--compile] [--batch 64]
        [--steps 10] [--methods ...] [--json FILE] [--markdown FILE] [--time-budget SECONDS]
    python benchmarks/bench_training.py --device cpu --precision bf16 --smoke   # tiny sizes, 2 steps
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import statistics
import subprocess
import sys
import time
import types
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import torch
from transformers import CLIPConfig

from tireid_hf.data import load_tireid_dataset
from tireid_hf.data.collators import TrainingCollator, add_word_spans, caption_pairs
from tireid_hf.modeling import METHODS
from tireid_hf.processing import TIReIDProcessor, TrainingImageAugmentation
from tireid_hf.training.arguments import parse_training_arguments
from tireid_hf.training.loop import build_model as build_training_model

REPO = Path(__file__).resolve().parents[1]
IRRA_REFERENCE = Path(__file__).resolve().parent / "reference" / "irra"
SETUPS = {"synthetic": "synthetic config (tiny CLIP, 96x32)", "vit-b16": "ViT-B/16, 384x128"}
# The device table's sizes: CLIP widths (vision, text), layers, patch, embedding, images (height, width).
SIZES = {
    "vit-b16": {"vision_width": 768, "text_width": 512, "layers": 12, "patch": 16, "embed_dim": 512, "image_size": (384, 128)},
    "tiny": {"vision_width": 64, "text_width": 64, "layers": 2, "patch": 16, "embed_dim": 64, "image_size": (64, 32)},
}
WARMUP = 3  # untimed steps of every device-table row (torch.compile compiles in the first); 1 with --smoke
IRRA_ROW = "irra (reference)"


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


def clip_config(size: str) -> CLIPConfig:
    """The CLIP of ``SIZES[size]`` as IRRA's CLIP builds it: heads = width // 64, MLP width = 4 x width
    (at "vit-b16": CLIP ViT-B/16, vision 768 x 12 layers, text 512 x 12, 512-d embeddings)."""
    sizes = SIZES[size]

    def tower(width: int) -> dict:
        return {"hidden_size": width, "intermediate_size": 4 * width, "num_attention_heads": width // 64,
                "num_hidden_layers": sizes["layers"]}

    return CLIPConfig(text_config={**tower(sizes["text_width"]), "max_position_embeddings": 77},
                      vision_config={**tower(sizes["vision_width"]), "patch_size": sizes["patch"]},
                      projection_dim=sizes["embed_dim"])


def build_model(method: str, setup: str, num_ids: int):
    """The model timed at ``setup`` (seeded): at "synthetic", the one ``train.py`` trains from the method's
    synthetic config (its ``model_config`` around its CLIP base, ``bases/clip-synthetic``); at a size of
    ``SIZES`` ("vit-b16", "tiny"), the method's default heads around a random CLIP of that size."""
    torch.manual_seed(0)
    if setup == "synthetic":  # train.py's own build_model (the config's CLIP path is relative to the repository)
        return build_training_model(synthetic_arguments(method)[0], num_ids)
    config_class, model_class = METHODS[method]
    return model_class(config_class(clip_config=clip_config(setup).to_dict(), image_size=SIZES[setup]["image_size"],
                                    num_ids=num_ids))


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


def irra_masked_tokens(caption_ids: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mlm_ids, mlm_labels)`` of IRRA's MLM task, its ``_build_random_masked_tokens_and_labels``
    (datasets/bases.py) over a batch: each token t with 0 < t < 49405 is chosen with probability 0.15;
    a chosen token becomes ``<|mask|>`` (49405) with probability 0.8, a random token of [1, 49404] with
    0.1, stays with 0.1, and its label is t; every other label is 0 (ignored by ``compute_mlm``). A row
    with no chosen token gets its token 1 masked."""
    mask_token = 49405
    draws = torch.rand(caption_ids.shape, generator=generator)
    chosen = (caption_ids > 0) & (caption_ids < mask_token) & (draws < 0.15)
    empty = ~chosen.any(dim=1)
    chosen[empty, 1] = True
    kind = torch.where(empty[:, None], torch.zeros_like(draws), draws / 0.15)  # the forced mask is a mask
    random_tokens = torch.randint(1, mask_token, caption_ids.shape, generator=generator)
    replaced = torch.where(kind < 0.8, mask_token, torch.where(kind < 0.9, random_tokens, caption_ids))
    return torch.where(chosen, replaced, caption_ids), torch.where(chosen, caption_ids, 0)


def irra_batch(batch: dict, context_length: int, seed: int) -> dict:
    """A collated batch of ours in IRRA's layout: ``images``, ``caption_ids`` [B, context_length] (the
    caption's tokens, then 0), ``pids``, ``mlm_ids`` / ``mlm_labels`` (:func:`irra_masked_tokens`)."""
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    if input_ids.shape[1] > context_length:
        raise ValueError(f"input_ids has {input_ids.shape[1]} tokens, more than IRRA's context length {context_length}")
    caption_ids = torch.zeros(input_ids.shape[0], context_length, dtype=torch.long)
    caption_ids[:, : input_ids.shape[1]] = input_ids * attention_mask
    mlm_ids, mlm_labels = irra_masked_tokens(caption_ids, torch.Generator().manual_seed(seed))
    return {"images": batch["pixel_values"], "caption_ids": caption_ids, "pids": batch["pids"],
            "mlm_ids": mlm_ids, "mlm_labels": mlm_labels}


def build_irra(size: str, num_ids: int):
    """IRRA's model (``model.build.build_model`` of the vendored reference) at ``SIZES[size]`` with random
    weights: its one download, ``build_CLIP_from_openai_pretrained``, is replaced (for this call only) by
    its own ``CLIP`` class built at the size, images of ``image_size`` at stride = patch (no overlap),
    77-token texts, CLIP's 49,408-token vocabulary. Its ``build_model`` then converts the weights to fp16."""
    if str(IRRA_REFERENCE) not in sys.path:
        sys.path.insert(0, str(IRRA_REFERENCE))
    from model import build as irra_build  # IRRA's package is named `model`
    from model.clip_model import CLIP

    sizes, vocab_size = SIZES[size], 49408

    def random_clip(name, image_size, stride_size):
        config = {"embed_dim": sizes["embed_dim"], "image_resolution": image_size, "vision_layers": sizes["layers"],
                  "vision_width": sizes["vision_width"], "vision_patch_size": sizes["patch"], "stride_size": stride_size,
                  "context_length": 77, "vocab_size": vocab_size, "transformer_width": sizes["text_width"],
                  "transformer_heads": sizes["text_width"] // 64, "transformer_layers": sizes["layers"]}
        return CLIP(**config), config

    # IRRA's defaults (utils/options.py) with run_irra.sh's losses
    args = types.SimpleNamespace(pretrain_choice="ViT-B/16", img_size=sizes["image_size"], stride_size=sizes["patch"],
                                 temperature=0.02, loss_names="sdm+mlm+id", cmt_depth=4, vocab_size=vocab_size,
                                 id_loss_weight=1.0, mlm_loss_weight=1.0)
    torch.manual_seed(0)
    with mock.patch.object(irra_build, "build_CLIP_from_openai_pretrained", random_clip):
        return irra_build.build_model(args, num_classes=num_ids)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, batches: list, steps: int, warmup: int, device: torch.device) -> dict:
    """Runs ``step(batch)`` ``warmup + steps`` times over ``batches`` in turn; the median seconds of the
    last ``steps`` (device synchronised around each), the peak memory in MiB since the start, and whether
    every loss ``step`` returned was finite."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        reset_peak_memory()
    seconds, finite = [], True
    for index in range(warmup + steps):
        synchronize(device)
        start = time.perf_counter()
        loss = step(batches[index % len(batches)])
        synchronize(device)
        seconds.append(time.perf_counter() - start)
        finite = finite and math.isfinite(loss.item())
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else memory_mib("VmHWM")
    return {"step_ms": statistics.median(seconds[warmup:]) * 1000, "peak_memory_mib": peak, "finite_losses": finite}


def method_step(model, precision: str, device: torch.device):
    """Our training step: forward (autocast to bfloat16 with precision "bf16") + backward + Adam."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def step(batch):
        with torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext():
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return loss.detach()

    return step


def irra_step(model):
    """IRRA's training step as its ``processor.do_train`` runs it: the sum of the returned ``*_loss``
    terms, ``zero_grad``, backward, Adam (its solver's eps 1e-3)."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5, eps=1e-3)

    def step(batch):
        ret = model(batch)
        total_loss = sum(value for key, value in ret.items() if "loss" in key)
        optimizer.zero_grad()
        total_loss.backward()
        optimizer.step()
        return total_loss.detach()

    return step


def to_device(batch: dict, device: torch.device) -> dict:
    return {key: value.to(device) for key, value in batch.items()}


def device_table(methods, size: str, device: torch.device, precision: str, compile_: str | None, steps: int,
                 batch_size: int, warmup: int = WARMUP, time_budget: float | None = None, on_row=None) -> list[dict]:
    """The device table's rows (see the module docstring): IRRA's first, then every stage of every method.
    ``compile_``: None (eager) or the ``torch.compile`` backend of ``model.compile(backend=compile_)``.
    A row not started within ``time_budget`` seconds is recorded with ``skipped`` instead of figures;
    ``on_row(rows)`` is called after every row (to write them as they come)."""
    start, rows = time.monotonic(), []
    dataset = load_tireid_dataset("synthetic", num_train_ids=max(8, batch_size // 8), num_validation_ids=1,
                                  num_test_ids=1)["train"]
    num_ids = len(set(dataset["pid"]))
    common = {"size": size, "device": device.type,
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
              "precision": precision, "compiled": compile_ or False, "batch": batch_size, "steps": steps, "warmup": warmup}

    def record(method: str, stage: str, measure) -> None:
        if time_budget is not None and time.monotonic() - start > time_budget:
            row = {"skipped": f"the time budget of {time_budget:.0f} s was spent before this row"}
        else:
            row = measure()
            row["samples_per_second"] = batch_size / row["step_ms"] * 1000
        rows.append({"method": method, "stage": stage, **common, **row})
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"{method} [{stage}]: {row}", file=sys.stderr, flush=True)
        if on_row is not None:
            on_row(rows)

    def batches_for(model):
        split = add_word_spans(dataset) if model.text_transforms else dataset
        collator = TrainingCollator(split, TIReIDProcessor.for_image_size(model.config.image_size), model.config,
                                    model.text_transforms, TrainingImageAugmentation())
        pairs, _ = caption_pairs(split)
        return [collator([pairs[(index * batch_size + i) % len(pairs)] for i in range(batch_size)], seed=index)
                for index in range(2)]

    def measure_irra():
        model = build_irra(size, num_ids)
        batches = [to_device(irra_batch(batch, 77, seed), device)
                   for seed, batch in enumerate(batches_for(build_model("clip_reid", size, num_ids)))]
        model.to(device).train()
        if compile_:
            model.compile(backend=compile_)
        return {"precision": "fp16 weights (IRRA's)", **time_steps(irra_step(model), batches, steps, warmup, device)}

    def measure_stage_on_device(model, stage: str):
        model.start_stage(stage)
        batches = [to_device(batch, device) for batch in batches_for(model)]
        model.to(device).train()
        if compile_:
            model.compile(backend=compile_)
        return {"trainable_parameters_m": sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
                **time_steps(method_step(model, precision, device), batches, steps, warmup, device)}

    record(IRRA_ROW, "its own step", measure_irra)
    for method in methods:
        model = build_model(method, size, num_ids)
        for stage in model.training_stages():
            record(method, stage, lambda: measure_stage_on_device(model, stage))  # noqa: B023 (called at once)
        del model
    irra = next((row for row in rows if row["method"] == IRRA_ROW and "step_ms" in row), None)
    for row in rows:
        if irra is not None and "step_ms" in row:
            row["step_vs_irra"] = row["step_ms"] / irra["step_ms"]
    return rows


def device_markdown(rows: list[dict]) -> str:
    """The device table's rows (of one or several runs) as one Markdown table."""
    lines = ["| method | stage | device | precision | compiled | batch | step ms | samples/s | step ÷ IRRA | "
             "peak memory (MiB) | finite losses |", "|---" * 11 + "|"]
    for row in rows:
        head = (f"| {row['method']} | {row['stage']} | {row['device_name']} | {row['precision']} | "
                f"{row['compiled'] or 'no'} | {row['batch']} |")
        if "skipped" in row:
            lines.append(f"{head} — | — | — | — | skipped: {row['skipped']} |")
            continue
        ratio = f"{row['step_vs_irra']:.2f}" if "step_vs_irra" in row else "—"
        lines.append(f"{head} {row['step_ms']:.1f} | {row['samples_per_second']:.1f} | {ratio} | "
                     f"{row['peak_memory_mib']:.0f} | {'yes' if row['finite_losses'] else 'NO'} |")
    return "\n".join(lines)


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


def device_rows(args: argparse.Namespace) -> list[dict]:
    """The device table of the parsed ``args``, its JSON (``--json``) rewritten after every row."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device cuda: CUDA is not available here (torch {torch.__version__}, "
                         f"torch.version.cuda={torch.version.cuda}); run the CPU check instead: "
                         "python benchmarks/bench_training.py --device cpu --precision bf16 --smoke")

    def write(rows):
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))

    return device_table(args.methods, "tiny" if args.smoke else "vit-b16", device, args.precision,
                        args.compile_backend if args.compile else None, args.steps or (2 if args.smoke else 10),
                        args.batch or (4 if args.smoke else 64), warmup=1 if args.smoke else WARMUP,
                        time_budget=args.time_budget, on_row=write)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=sorted(METHODS))
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS), help="CPU table only")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per stage (CPU table: at the synthetic config, default 10; device table: "
                             "default 10, 2 with --smoke)")
    parser.add_argument("--vit-steps", type=int, default=3, help="CPU table: timed steps per stage at ViT-B/16 size")
    parser.add_argument("--vit-batch", type=int, default=8, help="CPU table: batch at ViT-B/16 size")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None, help="the device table, on this device")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="fp32", help="device table: autocast or not")
    parser.add_argument("--compile", action="store_true", help="device table: model.compile() before the warm-up")
    parser.add_argument("--compile-backend", default="inductor",
                        help="device table: torch.compile's backend (aot_eager: the graphs are captured, forward and "
                             "backward, without Inductor's code generation, minutes faster on a CPU)")
    parser.add_argument("--batch", type=int, default=None, help="device table: batch size (default 64, 4 with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="device table at tiny sizes (width 64, 2 layers, 64x32)")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="device table: rows not started after this many seconds are recorded as skipped")
    parser.add_argument("--markdown", type=Path, default=None, help="device table: also write the table here")
    args = parser.parse_args(argv)
    device_only = [f"--{name.replace('_', '-')}" for name in ("precision", "compile", "compile_backend", "batch", "smoke",
                                                                  "time_budget", "markdown")
                   if getattr(args, name) != parser.get_default(name)]
    if args.device is None and device_only:
        parser.error(f"{', '.join(device_only)} belong to the device table: add --device cuda (or --device cpu)")
    for name in ("steps", "batch", "vit_steps", "vit_batch"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        method, setup, stage_index, steps, *batch = argv[1:]
        print(json.dumps(measure(method, setup, int(stage_index), int(steps), int(batch[0]) if batch else None)))
        return
    args = parse_arguments(argv)
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    if args.device:
        table = device_markdown(device_rows(args))
        if args.markdown:
            args.markdown.write_text(table + "\n")
        print(table)
        return
    rows = run_all(args.methods, args.setups, args.steps or 10, args.vit_steps, args.vit_batch)
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
