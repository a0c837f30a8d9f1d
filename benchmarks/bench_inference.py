"""Inference cost of each method against the `clip_reid` baseline: embeddings per second.

Every model is the EXPORTED inference model (``export_for_inference()``) and shares the SAME random
CLIP ViT-B/16 weights (384x128 images, 77-token texts with 30 real tokens); a method's own
inference path runs on top (LGUR: dictionary + prototypes; CADA additionally times ``rerank_scores``
of one query against ``--rerank-k`` candidates). Runs are interleaved with the same threads; FLOPs
are counted once, medians and minima of the times are printed with the ratios method / clip_reid
(on a shared CPU the minimum is the steadier estimate).

    python benchmarks/bench_inference.py [--methods lcr2s cada lgur uit] [--batch 8] [--repeats 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import CLIPConfig

from tireid_hf.modeling import METHODS


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def flops(function) -> int:
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


def measure(methods, batch: int, repeats: int, rerank_k: int) -> list[dict]:
    """FLOPs and interleaved timings of clip_reid and ``methods`` (see the module docstring)."""
    torch.manual_seed(0)
    clip_config = CLIPConfig(vision_config={"patch_size": 16}).to_dict()  # ViT-B/16 shapes
    models = {}
    for method in ["clip_reid", *methods]:
        config_class, model_class = METHODS[method]
        model = model_class(config_class(clip_config=clip_config, num_ids=10)).export_for_inference().eval()
        if models:
            model.clip.load_state_dict(models["clip_reid"].clip.state_dict())  # the same backbone weights
        models[method] = model
    pixels = torch.randn(batch, 3, 384, 128)
    input_ids = torch.randint(300, 40000, (batch, 77))
    input_ids[:, 0], input_ids[:, 29:] = 49406, 49407
    attention_mask = (torch.arange(77) < 30).long().expand(batch, -1).contiguous()
    candidates = torch.randn(rerank_k, 3, 384, 128)

    runs = {}
    for method, model in models.items():
        runs[(method, "image")] = lambda model=model: model.get_image_features(pixel_values=pixels)
        runs[(method, "text")] = lambda model=model: model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        if model.can_rerank:
            runs[(method, f"re-rank 1 query x {rerank_k} images")] = lambda model=model: model.rerank_scores(
                input_ids[:1, :30], attention_mask[:1, :30], candidates)
    counted = {key: flops(run) for key, run in runs.items()}
    times = {key: [] for key in runs}
    with torch.inference_mode():
        for run in runs.values():
            run()  # warm-up
        for _ in range(repeats):
            for key, run in runs.items():
                times[key].append(timed(run))
    rows = []
    for (method, what), values in times.items():
        count = rerank_k if what.startswith("re-rank") else batch
        rows.append({"method": method, "what": what, "gflop": counted[(method, what)] / 1e9,
                     "median_ms": statistics.median(values) * 1000, "min_ms": min(values) * 1000,
                     "per_second": count / statistics.median(values)})
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a table with the ratios method / clip_reid of median time, minimum time and FLOPs."""
    base = {row["what"]: row for row in rows if row["method"] == "clip_reid"}
    lines = ["| method | what | GFLOP | median ms | per second | ratio to clip_reid (median / min / FLOP) |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        reference = base.get(row["what"])
        ratio = (f"{row['median_ms'] / reference['median_ms']:.3f} / {row['min_ms'] / reference['min_ms']:.3f} / "
                 f"{row['gflop'] / reference['gflop']:.3f}") if reference else "—"
        lines.append(f"| {row['method']} | {row['what']} | {row['gflop']:.1f} | {row['median_ms']:.0f} | "
                     f"{row['per_second']:.1f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=[m for m in METHODS if m != "clip_reid"], choices=sorted(METHODS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rerank-k", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    rows = measure(args.methods, args.batch, args.repeats, args.rerank_k)
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
          f"batch {args.batch}, {args.repeats} interleaved repeats")
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
