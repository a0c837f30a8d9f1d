"""Inference cost of `uit` against the `clip_reid` baseline: get_image_features and get_text_features.

Both models share the SAME random CLIP backbone at ViT-B/16 size (384x128 images, 77-token texts);
UIT's restoration decoder and ID classifier are training-only, so its exported model is timed, as a
Hub checkpoint would run. Interleaved repeats, same threads; prints medians, embeddings per second
and the ratio uit / clip_reid.

    PYTHONPATH=src python benchmarks/bench_uit.py [--batch 8] [--repeats 7]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from transformers import CLIPConfig

from tireid_hf.modeling import ClipReIDConfig, ClipReIDModel, UITConfig, UITModel


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
    uit = UITModel(UITConfig(clip_config=clip_config)).export_for_inference().eval()
    uit.clip.load_state_dict(baseline.clip.state_dict())
    pixels = torch.randn(args.batch, 3, 384, 128)
    input_ids = torch.randint(1, 49406, (args.batch, 77))
    attention_mask = torch.ones_like(input_ids)

    runs = {}
    for name, model in (("clip_reid", baseline), ("uit", uit)):
        runs[(name, "image")] = lambda model=model: model.get_image_features(pixel_values=pixels)
        runs[(name, "text")] = lambda model=model: model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
    times = {key: [] for key in runs}
    with torch.inference_mode():
        for run in runs.values():  # warm-up
            run()
        torch.testing.assert_close(runs[("uit", "image")](), runs[("clip_reid", "image")]())
        for _ in range(args.repeats):
            for key, run in runs.items():
                times[key].append(timed(run))

    medians = {key: statistics.median(value) for key, value in times.items()}
    print(f"machine: {platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"batch {args.batch} (images 3 x 384 x 128, texts 77 tokens), {args.repeats} interleaved repeats, medians:")
    for modality in ("image", "text"):
        for name in ("clip_reid", "uit"):
            median = medians[(name, modality)]
            print(f"  {name:9s} get_{modality}_features: {median * 1000:8.1f} ms  ({args.batch / median:7.1f} emb/s)")
        ratio = medians[("uit", modality)] / medians[("clip_reid", modality)]
        print(f"  ratio uit / clip_reid ({modality}) = {ratio:.3f}")


if __name__ == "__main__":
    main()
