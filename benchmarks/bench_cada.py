"""Inference cost of CADA against the clip_reid baseline, same random CLIP ViT-B/16 backbone.

CADA's retrieval embeddings are the global CLIP embeddings, so ``get_image_features`` and
``get_text_features`` should cost the same as the baseline's; the extra cost is the optional second
stage, ``rerank_scores`` (one query decoded against its top-k images), timed here for k = 16.
Images 384x128, batch 8, interleaved repeats, medians.

    python benchmarks/bench_cada.py [--batch 8] [--repeats 7] [--rerank-k 16]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from transformers import CLIPConfig

from tireid_hf.modeling import CADAConfig, CADAModel, ClipReIDConfig, ClipReIDModel


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rerank-k", type=int, default=16)
    args = parser.parse_args()

    torch.manual_seed(0)
    clip_config = CLIPConfig(vision_config={"patch_size": 16}).to_dict()  # ViT-B/16 shapes
    baseline = ClipReIDModel(ClipReIDConfig(clip_config=clip_config)).eval()
    cada = CADAModel(CADAConfig(clip_config=clip_config)).export_for_inference().eval()
    cada.clip.load_state_dict(baseline.clip.state_dict())  # the same backbone weights
    pixels = torch.randn(args.batch, 3, 384, 128)
    input_ids = torch.randint(300, 40000, (args.batch, 30))
    input_ids[:, 0], input_ids[:, -1] = 49406, 49407
    attention_mask = torch.ones_like(input_ids)
    candidates = torch.randn(args.rerank_k, 3, 384, 128)

    runs = {
        "clip_reid get_image_features": lambda: baseline.get_image_features(pixels),
        "cada      get_image_features": lambda: cada.get_image_features(pixels),
        "clip_reid get_text_features ": lambda: baseline.get_text_features(input_ids, attention_mask),
        "cada      get_text_features ": lambda: cada.get_text_features(input_ids, attention_mask),
        "cada      rerank_scores     ": lambda: cada.rerank_scores(input_ids[:1], attention_mask[:1], candidates),
    }
    times = {name: [] for name in runs}
    with torch.inference_mode():
        for run in runs.values():
            run()  # warm-up
        for _ in range(args.repeats):
            for name, run in runs.items():
                times[name].append(timed(run))
    medians = {name: statistics.median(values) for name, values in times.items()}

    print(f"machine: {platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"batch {args.batch} x 3 x 384 x 128 / captions of 30 tokens, {args.repeats} interleaved repeats, medians:")
    for name, median in medians.items():
        count = args.rerank_k if "rerank" in name else args.batch
        unit = "query-image pairs/s" if "rerank" in name else "embeddings/s"
        print(f"  {name}: {median * 1000:8.1f} ms  ({count / median:.1f} {unit})")
    names = list(medians)
    print(f"  ratio cada / clip_reid: images {medians[names[1]] / medians[names[0]]:.3f}, "
          f"texts {medians[names[3]] / medians[names[2]]:.3f}")
    print(f"  rerank of one query over k={args.rerank_k}: {medians[names[4]] * 1000:.1f} ms "
          f"(includes encoding the {args.rerank_k} candidate images)")


if __name__ == "__main__":
    main()
