"""ONNX encoders (onnxruntime, float32 and int8) against PyTorch eager, ViT-B/16 at 384x128.

    PYTHONPATH=src python benchmarks/bench_onnx.py [--threads 1] [--repeats 10]

A full-size random ``clip_reid`` (the weights do not change the time) is exported with
``tireid_hf.onnx_export.export_onnx`` (export time reported); image (batch 1 and 8) and text (77-token
batches of 1 and 8, 30 real tokens) encoders are timed, medians of ``--repeats`` runs after a warm-up,
all runs interleaved so that the machine's load hits every engine alike; ratios are eager / engine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import torch
from transformers import CLIPConfig

from tireid_hf.modeling import METHODS
from tireid_hf.onnx_export import OnnxEncoders, export_onnx
from tireid_hf.processing import TIReIDProcessor


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config_class, model_class = METHODS["clip_reid"]
    model = model_class(config_class(clip_config=CLIPConfig(vision_config={"patch_size": 16}).to_dict(), num_ids=10))
    model = model.export_for_inference().eval()
    processor = TIReIDProcessor.for_image_size((384, 128))
    print(f"torch {torch.__version__}, {args.threads} thread(s) for torch and onnxruntime, {platform.machine()}, "
          f"{os.cpu_count()} cores; load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        export_onnx(model, processor, f"{folder}/onnx", int8=True)
        print(f"export (float32 + int8): {time.perf_counter() - start:.0f} s; file sizes (MB): "
              + ", ".join(f"{name} {os.path.getsize(f'{folder}/onnx/{name}') / 2**20:.0f}" for name in sorted(os.listdir(f"{folder}/onnx")) if name.endswith(".onnx")))
        engines = {"eager": model, "onnxruntime": OnnxEncoders(f"{folder}/onnx", threads=args.threads),
                   "onnxruntime int8": OnnxEncoders(f"{folder}/onnx", int8=True, threads=args.threads)}
        runs = {}
        for batch in (1, 8):
            pixels = torch.randn(batch, 3, 384, 128)
            input_ids = torch.randint(300, 40000, (batch, 77))
            input_ids[:, 0], input_ids[:, 29:] = 49406, 49407
            mask = (torch.arange(77) < 30).long().expand(batch, -1).contiguous()
            for name, engine in engines.items():
                runs[("image", batch, name)] = lambda e=engine, p=pixels: e.get_image_features(pixel_values=p)
                runs[("text", batch, name)] = lambda e=engine, i=input_ids, m=mask: e.get_text_features(input_ids=i, attention_mask=m)
        times = {key: [] for key in runs}
        with torch.inference_mode():
            for function in runs.values():
                function()  # warm-up
            for _ in range(args.repeats):
                for key, function in runs.items():
                    start = time.perf_counter()
                    function()
                    times[key].append(time.perf_counter() - start)
    print("\n| encoder | batch | eager (ms) | onnxruntime (ms) | ratio | onnxruntime int8 (ms) | ratio |")
    print("|---|---|---|---|---|---|---|")
    for kind in ("image", "text"):
        for batch in (1, 8):
            eager, ort, int8 = (statistics.median(times[(kind, batch, name)]) * 1000 for name in engines)
            print(f"| {kind} | {batch} | {eager:.0f} | {ort:.0f} | {eager / ort:.2f}x | {int8:.0f} | {eager / int8:.2f}x |")
    print(f"\nload average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
