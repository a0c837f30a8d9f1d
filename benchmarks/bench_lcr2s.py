"""Inference cost of LCR²S against the clip_reid baseline: get_image_features and get_text_features.

Both models hold the SAME random ViT-B/16-sized CLIP weights; images 384x128, texts of 77 tokens.
LCR²S retrieves with its student (the plain dual encoder), so the ratio should be ~1.0: the teacher
and the fusion modules never run at inference (the LCR²S model here is the exported one).
Runs interleaved, same threads; prints the medians, embeddings per second and the ratio.

    python benchmarks/bench_lcr2s.py [--batch 8] [--repeats 7]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from transformers import CLIPConfig

from tireid_hf.modeling import ClipReIDConfig, ClipReIDModel, LCR2SConfig, LCR2SModel


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
    clip_config = CLIPConfig(vision_config={"patch_size": 16}).to_dict()  # ViT-B/16 shapes
    baseline = ClipReIDModel(ClipReIDConfig(clip_config=clip_config)).eval()
    lcr2s = LCR2SModel(LCR2SConfig(clip_config=clip_config))
    lcr2s.clip.load_state_dict(baseline.clip.state_dict())
    lcr2s = lcr2s.export_for_inference()
    pixels = torch.randn(args.batch, 3, 384, 128)
    input_ids = torch.randint(300, 40000, (args.batch, 77))
    input_ids[:, -1] = 49407  # end of text: CLIP pools there
    attention_mask = torch.ones_like(input_ids)

    runs = {
        ("image", "lcr2s"): lambda: lcr2s.get_image_features(pixels),
        ("image", "clip_reid"): lambda: baseline.get_image_features(pixels),
        ("text", "lcr2s"): lambda: lcr2s.get_text_features(input_ids, attention_mask),
        ("text", "clip_reid"): lambda: baseline.get_text_features(input_ids, attention_mask),
    }
    times = {key: [] for key in runs}
    with torch.inference_mode():
        torch.testing.assert_close(runs["image", "lcr2s"](), runs["image", "clip_reid"]())
        for _ in range(args.repeats):
            for key, run in runs.items():
                times[key].append(timed(run))

    print(f"machine: {platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"batch {args.batch}, images 3x384x128, texts 77 tokens, {args.repeats} interleaved repeats, medians:")
    for modality in ("image", "text"):
        medians = {method: statistics.median(times[modality, method]) for method in ("lcr2s", "clip_reid")}
        for method, median in medians.items():
            print(f"  {modality:5s} {method:9s}: {median * 1000:8.1f} ms  ({args.batch / median:7.1f} {modality}s/s)")
        print(f"  {modality:5s} ratio lcr2s / clip_reid time = {medians['lcr2s'] / medians['clip_reid']:.3f}")


if __name__ == "__main__":
    main()
