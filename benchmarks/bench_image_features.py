"""Time the baseline's get_image_features against plain CLIP with per-forward interpolation.

Both models have ViT-B/16-sized random weights and get 384x128 images; ours has the rectangular
24x8 position table built once, CLIP interpolates its 14x14 table (bicubic) at every call.
Runs interleaved, same threads, same attention implementation; prints the medians and the ratio.

    python benchmarks/bench_image_features.py [--batch 8] [--repeats 7]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from transformers import CLIPConfig, CLIPModel

from tireid_hf.modeling import ClipReIDConfig, ClipReIDModel


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    torch.manual_seed(0)
    clip_config = CLIPConfig(vision_config={"patch_size": 16})  # ViT-B/16 shapes
    clip = CLIPModel(clip_config).eval()
    ours = ClipReIDModel(ClipReIDConfig(clip_config=clip_config.to_dict())).eval()
    pixels = torch.randn(args.batch, 3, 384, 128)

    with torch.inference_mode():
        run_ours = lambda: ours.get_image_features(pixel_values=pixels)  # noqa: E731
        run_clip = lambda: clip.get_image_features(pixel_values=pixels, interpolate_pos_encoding=True)  # noqa: E731
        run_ours(), run_clip()  # warm-up
        ours_times, clip_times = [], []
        for _ in range(args.repeats):
            ours_times.append(timed(run_ours))
            clip_times.append(timed(run_clip))

    ours_median, clip_median = statistics.median(ours_times), statistics.median(clip_times)
    print(f"machine: {platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"batch {args.batch} x 3 x 384 x 128, {args.repeats} interleaved repeats, medians:")
    print(f"  tireid clip_reid get_image_features : {ours_median * 1000:8.1f} ms  ({args.batch / ours_median:.1f} img/s)")
    print(f"  CLIPModel + interpolate_pos_encoding: {clip_median * 1000:8.1f} ms  ({args.batch / clip_median:.1f} img/s)")
    print(f"  ratio ours / CLIP = {ours_median / clip_median:.3f}")


if __name__ == "__main__":
    main()
