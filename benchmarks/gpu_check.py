"""The GPU check: one command that fills the GPU table of benchmarks/RESULTS.md (run it through
``benchmarks/gpu_check.sh``, or ``make gpu-check``). Nothing is downloaded: random weights, the
synthetic data.

1. ``bench_training``'s device table (every method, LCR²S per stage, against IRRA's own step) at
   ViT-B/16, 384x128, batch 64: in bf16, in fp32, then in bf16 compiled (``torch.compile``) with the
   time left;
2. ``accelerate launch --mixed_precision bf16 train.py`` for ``--train-steps`` steps per stage of every
   method on the synthetic data at ViT-B/16 size (batch 32, data loader workers): every logged loss
   finite, and the saved model, loaded with ``AutoModel``, embeds a fixed batch as the trained weights
   of the run's last checkpoint do (bf16 tolerance; validation runs at the last step only, so the saved
   best model is the last step's);
3. the results written as ``OUT/gpu_check.json`` and ``OUT/gpu_check.md`` (Markdown tables for RESULTS.md).

Expected time on one H100 (not measured yet: no GPU has been lent): bf16 and fp32 tables about 1 and
1.5 minutes (7 rows of 3 warm-up + 10 steps, random initialisation and collation of 2 batches each);
training checks about 2.5 minutes (5 launches of 50 steps per stage, LCR²S 2 stages, plus the
validation and test embedding of 50 identities); the compiled table gets what is left of ``--budget``
(480 s): rows it cannot start in time are recorded as skipped, not silently dropped.

``--smoke`` runs the same code on the CPU at tiny sizes (CLIP width 64, 2 layers, 64x32 images), 2
timed steps, 2 training steps, without the compiled table (CPU compilation takes minutes); the test
suite runs it (tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_training  # noqa: E402

from tireid_hf.modeling import METHODS  # noqa: E402

REPO = bench_training.REPO
BUDGET_SECONDS = 480
# Sizes of the two runs: the table's size and batch, train.py's steps, batch, data and workers.
RUNS = {
    "gpu": {"size": "vit-b16", "batch": 64, "steps": 10, "warmup": bench_training.WARMUP, "train_steps": 50,
            "train_batch": 32, "workers": 8,
            "dataset_options": {"num_train_ids": 200, "num_validation_ids": 50, "num_test_ids": 50}},
    "smoke": {"size": "tiny", "batch": 4, "steps": 2, "warmup": 1, "train_steps": 2, "train_batch": 8, "workers": 2,
              "dataset_options": {"num_train_ids": 8, "num_validation_ids": 2, "num_test_ids": 2}},
}


def train_arguments(method: str, run: dict, output_dir: Path) -> list[str]:
    """train.py's arguments of one training check: the method's synthetic config with a random CLIP of
    the run's size instead of the synthetic base, ``train_steps`` steps per stage, validation and a
    checkpoint at the last step only, every step's loss logged."""
    size = bench_training.SIZES[run["size"]]
    model_config = {"clip_config": bench_training.clip_config(run["size"]).to_dict(), "image_size": list(size["image_size"])}
    return ["--config", str(REPO / "configs" / f"{method}_synthetic.yaml"), "--clip_name_or_path", "",
            "--model_config", json.dumps(model_config), "--dataset_options", json.dumps(run["dataset_options"]),
            "--max_steps", str(run["train_steps"]), "--per_device_train_batch_size", str(run["train_batch"]),
            "--per_device_eval_batch_size", str(2 * run["train_batch"]), "--eval_epochs", "1000000",
            "--save_steps", str(run["train_steps"]), "--logging_steps", "1", "--report_to", "none",
            "--dataloader_num_workers", str(run["workers"]), "--dataloader_persistent_workers", "true",
            "--output_dir", str(output_dir), "--overwrite_output_dir"]


def last_checkpoint_model(output_dir: Path, method: str, run: dict, num_ids: int):
    """The training model of the run's last checkpoint: built as train.py builds it, every stage
    started, the checkpoint's weights loaded (strictly)."""
    from safetensors.torch import load_file

    from tireid_hf.training.arguments import parse_training_arguments
    from tireid_hf.training.loop import build_model

    model_args = parse_training_arguments(train_arguments(method, run, output_dir))[0]
    model = build_model(model_args, num_ids)
    for stage in model.training_stages():
        model.start_stage(stage)
    checkpoints = sorted((output_dir / "checkpoints").glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    if not checkpoints:
        raise FileNotFoundError(f"{output_dir / 'checkpoints'}: train.py wrote no checkpoint")
    model.load_state_dict(load_file(checkpoints[-1] / "model.safetensors"), strict=True)
    return model


def embeddings(model, inputs: dict, device: torch.device) -> torch.Tensor:
    """Image then text embeddings of ``inputs``, under bf16 autocast, as one [2B, D] float tensor."""
    model.to(device).eval()
    inputs = {key: value.to(device) for key, value in inputs.items()}
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        images = model.get_image_features(inputs["pixel_values"])
        texts = model.get_text_features(inputs["input_ids"], inputs["attention_mask"])
    return torch.cat([images, texts]).float().cpu()


def training_check(method: str, run: dict, output_dir: Path, device: torch.device) -> dict:
    """Runs train.py through ``accelerate launch --mixed_precision bf16`` and checks what it left (see
    the module docstring); the record of one method's check."""
    from transformers import AutoModel

    from tireid_hf.data import load_tireid_dataset
    from tireid_hf.processing import TIReIDProcessor

    start = time.monotonic()
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
               "--mixed_precision", "bf16", "--dynamo_backend", "no", str(REPO / "train.py"),
               *train_arguments(method, run, output_dir)]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    record = {"method": method, "steps_per_stage": run["train_steps"], "seconds": time.monotonic() - start}
    if completed.returncode:
        return {**record, "ok": False, "error": f"train.py exited with {completed.returncode}:\n{completed.stderr[-3000:]}"}
    results = json.loads((output_dir / "results.json").read_text())
    losses = [entry["train/loss"] for entry in results["history"] if entry["kind"] == "train"]
    record.update(logged_losses=len(losses), final_loss=losses[-1] if losses else None,
                  finite_losses=bool(losses) and all(math.isfinite(loss) for loss in losses))
    saved = AutoModel.from_pretrained(output_dir)
    test = load_tireid_dataset("synthetic", **run["dataset_options"])["test"]
    processor = TIReIDProcessor.from_pretrained(output_dir)
    inputs = dict(processor(text=[captions[0] for captions in test["captions"][:4]], images=test["image"][:4],
                            return_tensors="pt"))
    reloaded = embeddings(saved, inputs, device)
    trained = embeddings(last_checkpoint_model(output_dir, method, run, saved.config.num_ids), inputs, device)
    difference = (reloaded - trained).abs().max().item()
    record.update(saved_class=type(saved).__name__, max_embedding_difference=difference,
                  embeddings_match=bool(torch.allclose(reloaded, trained, rtol=1e-2, atol=1e-2)))
    record["ok"] = record["finite_losses"] and record["embeddings_match"]
    return record


def training_markdown(records: list[dict]) -> str:
    lines = ["| method | steps per stage | launch + checks (s) | logged losses | final loss | finite | "
             "max embedding difference after reload | ok |", "|---" * 8 + "|"]
    for record in records:
        if "error" in record:
            lines.append(f"| {record['method']} | {record['steps_per_stage']} | {record['seconds']:.0f} | — | — | — | — | "
                         "NO: train.py failed |")
            continue
        lines.append(f"| {record['method']} | {record['steps_per_stage']} | {record['seconds']:.0f} | "
                     f"{record['logged_losses']} | {record['final_loss']:.4f} | {'yes' if record['finite_losses'] else 'NO'} | "
                     f"{record['max_embedding_difference']:.2e} | {'yes' if record['ok'] else 'NO'} |")
    return "\n".join(lines)


def write_results(out: Path, report: dict) -> None:
    """``gpu_check.json`` (everything) and ``gpu_check.md`` (the two tables) in ``out``."""
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    text = (f"Device: {report['device_name']}; torch {report['torch']}; {report['size']}; "
            f"total {report['seconds']:.0f} s.\n\n" + bench_training.device_markdown(report["benchmark"]) + "\n\n"
            + training_markdown(report["training"]) + "\n")
    (out / "gpu_check.md").write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "out" / "gpu-check", help="folder of the results")
    parser.add_argument("--smoke", action="store_true", help="on the CPU, tiny sizes (the test suite's run)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=sorted(METHODS))
    parser.add_argument("--budget", type=float, default=BUDGET_SECONDS, help="seconds for the whole check")
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        parser.error(f"no CUDA device here (torch {torch.__version__}); on a CPU run the smoke check: "
                     "benchmarks/gpu_check.sh --smoke")
    run, device = RUNS["smoke" if args.smoke else "gpu"], torch.device("cpu" if args.smoke else "cuda")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    report = {"device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
              "torch": torch.__version__, "size": bench_training.SETUPS.get(run["size"], run["size"]),
              "benchmark": [], "training": [], "phases_seconds": {}}

    def finish_phase(name: str, phase_start: float) -> None:
        report["phases_seconds"][name] = time.monotonic() - phase_start
        report["seconds"] = time.monotonic() - start
        write_results(args.out, report)

    def table(precision: str, compile_backend: str | None, time_budget: float | None) -> None:
        phase_start = time.monotonic()
        report["benchmark"] += bench_training.device_table(args.methods, run["size"], device, precision, compile_backend,
                                                           run["steps"], run["batch"], warmup=run["warmup"],
                                                           time_budget=time_budget)
        finish_phase(f"table {precision}{' compiled' if compile_backend else ''}", phase_start)

    table("bf16", None, None)
    table("fp32", None, None)
    phase_start = time.monotonic()
    for method in args.methods:
        report["training"].append(training_check(method, run, args.out / "runs" / method, device))
    finish_phase("training checks", phase_start)
    if not args.smoke:
        table("bf16", "inductor", max(0.0, args.budget - (time.monotonic() - start) - 30))
    print((args.out / "gpu_check.md").read_text())
    failed = [row["method"] for row in report["benchmark"] if not row.get("finite_losses", True)]
    failed += [record["method"] for record in report["training"] if not record["ok"]]
    if failed:
        print(f"gpu check FAILED for: {sorted(set(failed))} (see {args.out / 'gpu_check.json'})", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
