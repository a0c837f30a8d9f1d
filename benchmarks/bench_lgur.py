"""Inference cost of `lgur` against the `clip_reid` baseline: embeddings per second.

Both models share the SAME random CLIP ViT-B/16 weights (384x128 images, text padded to 77 tokens);
LGUR adds its inference path on top (shared-dictionary reconstruction with 400 atoms, foreground
weighting, 2-layer prototype decoder with 6 prototypes, 6 projections to 3072-d). The models run
interleaved, same threads; FLOPs (counted once), medians and minima are printed with the ratios lgur / clip_reid (on a
shared, loaded CPU the minimum is the steadier estimate of the intrinsic cost).

    python benchmarks/bench_lgur.py [--batch 8] [--repeats 7] [--device cpu]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import CLIPConfig

from tireid_hf.modeling import ClipReIDConfig, ClipReIDModel, LGURConfig, LGURModel


def timed(function, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def flops(function) -> int:
    """Floating-point operations of one call (deterministic, unlike the timings on a shared machine)."""
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    torch.manual_seed(0)
    clip_config = CLIPConfig(vision_config={"patch_size": 16}).to_dict()  # ViT-B/16 shapes
    baseline = ClipReIDModel(ClipReIDConfig(clip_config=clip_config, inference_only=True)).eval()
    lgur = LGURModel(LGURConfig(clip_config=clip_config, inference_only=True)).eval()
    lgur.clip.load_state_dict(baseline.clip.state_dict())  # the same backbone weights
    baseline.to(device), lgur.to(device)
    pixels = torch.randn(args.batch, 3, 384, 128, device=device)
    input_ids = torch.randint(300, 40000, (args.batch, 77), device=device)
    attention_mask = torch.zeros(args.batch, 77, dtype=torch.long, device=device)
    attention_mask[:, :30] = 1  # a typical caption length; the rest is padding

    runs = {
        ("image", "clip_reid"): lambda: baseline.get_image_features(pixel_values=pixels),
        ("image", "lgur"): lambda: lgur.get_image_features(pixel_values=pixels),
        ("text", "clip_reid"): lambda: baseline.get_text_features(input_ids=input_ids, attention_mask=attention_mask),
        ("text", "lgur"): lambda: lgur.get_text_features(input_ids=input_ids, attention_mask=attention_mask),
    }
    counted = {key: flops(run) for key, run in runs.items()}  # forward only; the counter's hooks need autograd on
    times = {key: [] for key in runs}
    with torch.inference_mode():
        for run in runs.values():
            run()  # warm-up
        for _ in range(args.repeats):
            for key, run in runs.items():
                times[key].append(timed(run, device))

    extra = sum(p.numel() for p in lgur.parameters()) - sum(p.numel() for p in baseline.parameters())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} {torch.get_num_threads()} threads"
    print(f"device: {name}, torch {torch.__version__}; batch {args.batch}, {args.repeats} interleaved repeats")
    print(f"lgur inference head: {extra / 1e6:.2f} M parameters over the shared CLIP; embedding width "
          f"{lgur.config.embed_dim} vs {baseline.config.embed_dim}")
    for modality in ("image", "text"):
        base, ours = counted[(modality, "clip_reid")], counted[(modality, "lgur")]
        print(f"  {modality:5s} GFLOP/batch: clip_reid {base / 1e9:.1f}  lgur {ours / 1e9:.1f}  ratio {ours / base:.3f}")
        for statistic in (statistics.median, min):
            value = {method: statistic(times[(modality, method)]) for method in ("clip_reid", "lgur")}
            per_second = "  ".join(f"{method} {value[method] * 1000:8.1f} ms ({args.batch / value[method]:6.1f} {modality}s/s)"
                                   for method in value)
            print(f"  {modality:5s} {statistic.__name__:6s}: {per_second}  ratio lgur/clip_reid {value['lgur'] / value['clip_reid']:.3f}")

if __name__ == "__main__":
    main()
