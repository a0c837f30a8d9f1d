"""The demo Space under load: one query's latency, and 50 concurrent users for each queue setting.

    PYTHONPATH=src python benchmarks/bench_space.py [--gallery 3074] [--users 50] [--settings 1x1 16x1 16x2 50x1]

The model is a full-size random ``clip_reid`` (ViT-B/16 at 384x128, 77-token texts: the cost of a real
checkpoint; the weights do not change the time); the gallery is ``--gallery`` images (CUHK-PEDES's test
gallery has 3,074) whose embeddings are given, as ``tireid index build`` would have written them, so
nothing is embedded at start-up. Every query is a caption of a known identity, so each answer also
computes R@1 / AP over the whole gallery (the Space's most expensive path).

1. One query at a time: text encoder + search (``embed_texts`` + ``search_embeddings``), and the whole
   callback (``Demo.search``: results drawn, metrics), p50 / p95 over ``--queries``.
2. For each queue setting ``BxW`` (up to B waiting queries per batched call, W calls at a time): the app
   is served on localhost by its own process (as on a Space), and ``--users`` users send one query each
   at the same moment through Gradio's HTTP API (asyncio, one client process); p50 / p95 of the time
   each waited for its answer (the result images' own downloads are not included), and the errors.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import CLIPConfig

from tireid_hf.modeling import METHODS
from tireid_hf.processing import TIReIDProcessor
from tireid_hf.retrieval import GalleryIndex, embed_texts

SPACE = Path(__file__).resolve().parents[1] / "spaces" / "tireid-demo" / "app.py"
COLOURS = ["red", "blue", "black", "white", "green", "grey", "yellow", "brown"]
GARMENTS = ["jacket", "coat", "shirt", "dress", "backpack", "trousers", "skirt", "hat"]


def load_app():
    spec = importlib.util.spec_from_file_location("tireid_demo_app", SPACE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def caption(i: int) -> str:
    return (f"a person in a {COLOURS[i % 8]} {GARMENTS[i // 8 % 8]} with a {COLOURS[i // 64 % 8]} "
            f"{GARMENTS[(i + 3) % 8]}, walking number {i}")


async def ask(client, url: str, query: str) -> tuple[float, bool]:
    """One user: the search through Gradio's HTTP API (POST the call, read its event stream); (seconds, ok)."""
    start = time.perf_counter()
    try:
        response = await client.post(f"{url}/gradio_api/call/search", json={"data": [query, 10, False]})
        event_id = response.json()["event_id"]
        stream = await client.get(f"{url}/gradio_api/call/search/{event_id}")
        events = stream.text
        ok = "event: complete" in events and "Identity" in events
    except Exception:  # noqa: BLE001  (any failure a user would see counts as an error)
        ok = False
    return time.perf_counter() - start, ok


async def users(url: str, queries: list[str]):
    """Wait until the app answers, then send every query at the same moment; (answers, wall seconds)."""
    import httpx

    async with httpx.AsyncClient(timeout=600) as client:
        while True:  # the server process is starting: wait for the state "answers HTTP", not a duration
            try:
                if (await client.get(url)).status_code == 200:
                    break
            except httpx.TransportError:
                await asyncio.sleep(0.5)
        await ask(client, url, queries[0])  # warm-up
        start = time.perf_counter()
        answers = await asyncio.gather(*(ask(client, url, query) for query in queries))
        return answers, time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=3074)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--settings", nargs="+", default=["1x1", "8x1", "16x1", "16x2", "50x1"])
    parser.add_argument("--serve", default=None, help="internal: serve the app with this BxW setting on --port")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, as the Space's --threads (default: 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    app = load_app()
    torch.manual_seed(0)
    config_class, model_class = METHODS["clip_reid"]
    model = model_class(config_class(clip_config=CLIPConfig(vision_config={"patch_size": 16}).to_dict(), num_ids=10))
    model = model.export_for_inference().eval()
    processor = TIReIDProcessor.for_image_size((384, 128))
    images = [Image.new("RGB", (32, 96), ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256)) for i in range(args.gallery)]
    names = [f"{i:05d}.jpg" for i in range(args.gallery)]
    pids = [i // 4 for i in range(args.gallery)]
    captions = [caption(i) for i in range(args.gallery // 4)]
    gallery = app.Gallery(images, names, "benchmark", names, pids, {text: pid for pid, text in enumerate(captions)}, captions[:8])
    embeddings = torch.nn.functional.normalize(torch.randn(args.gallery, model.config.embed_dim), dim=1)
    index = GalleryIndex(embeddings, names)
    index.model, index.processor, index.images = model, processor, images
    demo_state = app.Demo(model, processor, gallery, index)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}, {os.cpu_count()} cores; "
          f"ViT-B/16 clip_reid, gallery {args.gallery}; load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")

    encode, whole = [], []
    for i in range(args.queries + 2 if args.queries else 0):
        start = time.perf_counter()
        index.search_embeddings(embed_texts(model, processor, [captions[i]], show_progress=False), k=10)
        middle = time.perf_counter()
        demo_state.search(captions[i], 10)
        if i >= 2:  # two warm-up queries
            encode.append(middle - start)
            whole.append(time.perf_counter() - middle)
    for label, times in [("text encoder + search", encode), ("whole callback (results drawn, R@1/AP)", whole)][:2 if encode else 0]:
        p50, p95 = np.percentile(np.array(times) * 1000, [50, 95])
        print(f"one query, {label}: p50 {p50:.0f} ms, p95 {p95:.0f} ms")

    if args.serve:
        batch, workers = (int(part) for part in args.serve.split("x"))
        print(f"serving on {args.port}", flush=True)
        app.make_app(demo_state, search_batch=batch, search_workers=workers).launch(
            server_name="127.0.0.1", server_port=args.port, quiet=True)
        return
    print(f"\n| queue setting (batch x workers) | {args.users} users: p50 (s) | p95 (s) | max (s) | errors | wall (s) |")
    print("|---|---|---|---|---|---|")
    for setting in args.settings:
        port = free_port()
        # The app in its own process, as on a Space: users' HTTP clients must not share its interpreter (GIL).
        server = subprocess.Popen([sys.executable, __file__, "--serve", setting, "--port", str(port), "--queries", "0",
                                   "--gallery", str(args.gallery), "--threads", str(args.threads)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            answers, wall = asyncio.run(users(f"http://127.0.0.1:{port}", [captions[i % len(captions)] for i in range(args.users)]))
        finally:
            server.terminate()
            server.wait()
        waits = np.array([wait for wait, _ in answers])
        errors = sum(not ok for _, ok in answers)
        p50, p95 = np.percentile(waits, [50, 95])
        print(f"| {setting.replace('x', ' x ')} | {p50:.2f} | {p95:.2f} | {waits.max():.2f} | {errors} | {wall:.1f} |", flush=True)
    print(f"\nload average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
