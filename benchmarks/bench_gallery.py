"""GalleryIndex.search_embeddings latency per query on 100,000 x 512-d gallery embeddings, every setting side by side.

    PYTHONPATH=src python benchmarks/bench_gallery.py [--gallery 100000] [--queries 200] [--data clip-like noisy-copies]

One query at a time (the interactive case: a user types a sentence), p50 and p95 over ``--queries``
queries, for each search setting: the exact backend in float32, float16 and int8 (with and without
exact float32 re-scoring of a candidate list), and, when faiss is importable, the FAISS default
(:func:`~tireid_hf.retrieval.index.default_faiss_settings`), wider IVF probes, HNSW32 (the old
default) and Flat. Reported per setting: build time, recall@10 against exact float32 search, the
share of queries whose true item is in the top-10, and the memory a search reads (the compressed or
FAISS copy; the float32 embeddings for exact float32; re-scoring touches only its candidates' rows).
The text encoder is not timed: that cost is the model's, not the index's.

Two kinds of data (``--data``):

* ``clip-like``: what a fine-tuned CLIP gives on a pedestrian gallery. Identities of 4 images each;
  every image is ``0.75 m + 0.5 p + 0.45 n`` (normalised), with ``m`` a mean direction shared by all
  images (random pairs of images have cosine ~0.55, as CLIP's do), ``p`` the identity's direction
  drawn around one of 64 attribute clusters (clothes, colours), ``n`` per-image noise. Captions are
  ``0.8 t + 0.25 p + 0.6 n`` with ``t`` a text mean direction ``m + g`` (the modality gap ``g``): a
  caption is closer to other captions than to any image, as in CLIP, so queries lie off the gallery's
  manifold. Exact search on it: R@1 ~0.60, R@10 ~0.87 over 100,000 images (the range of real models).
* ``noisy-copies``: isotropic random gallery vectors, queries are noisy copies of an item (cosine ~0.5).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from tireid_hf.retrieval import GalleryIndex

IMAGES_PER_ID = 4


def unit(vectors: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(vectors, dim=-1)


def clip_like(num_items: int, dim: int, num_queries: int, seed: int = 0):
    """``(gallery [G, D], queries [Q, D], true item of each query [Q])`` as described in the module docstring."""
    generator = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=generator)  # noqa: E731
    image_mean, gap = unit(randn(dim)), unit(randn(dim))
    text_mean = unit(image_mean + gap)
    num_ids = -(-num_items // IMAGES_PER_ID)
    attributes = unit(randn(64, dim))
    person = unit(attributes[torch.randint(64, (num_ids,), generator=generator)] + unit(randn(num_ids, dim)))
    owner = torch.arange(num_items) // IMAGES_PER_ID
    gallery = unit(0.75 * image_mean + 0.5 * person[owner] + 0.45 * unit(randn(num_items, dim)))
    query_ids = torch.randint(num_ids, (num_queries,), generator=generator)
    queries = unit(0.8 * text_mean + 0.25 * person[query_ids] + 0.6 * unit(randn(num_queries, dim)))
    return gallery, queries, owner, query_ids


def noisy_copies(num_items: int, dim: int, num_queries: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    gallery = unit(torch.randn(num_items, dim, generator=generator))
    sources = torch.randint(num_items, (num_queries,), generator=generator)
    queries = unit(gallery[sources] + 1.7 * unit(torch.randn(num_queries, dim, generator=generator)))
    return gallery, queries, torch.arange(num_items), sources


def settings(have_faiss: bool):
    """``(label, GalleryIndex options, FAISS params to try after building)`` of every measured setting."""
    rows = [("exact float32", {}, [None]),
            ("exact float16", {"precision": "float16"}, [None]),
            ("exact int8", {"precision": "int8"}, [None]),
            ("exact int8 + rescore 100", {"precision": "int8", "rescore": 100}, [None])]
    if have_faiss:
        rows += [("faiss default", {"backend": "faiss"}, [None]),
                 ("faiss default + rescore 100", {"backend": "faiss", "rescore": 100}, [None, "x2", "x4"]),
                 ("faiss HNSW32", {"backend": "faiss", "faiss_factory": "HNSW32,Flat"}, ["efSearch=128", "efSearch=1024"]),
                 ("faiss IVF,SQ8 + rescore 100", {"backend": "faiss", "faiss_factory": "IVF{nlist},SQ8", "rescore": 100}, ["x1", "x2"]),
                 ("faiss Flat", {"backend": "faiss", "faiss_factory": "Flat"}, [None])]
    return rows


def measure(index: GalleryIndex, queries: torch.Tensor, k: int):
    index.search_embeddings(queries[:5], k=k)  # warm-up
    latencies, tops = [], []
    for query in queries:
        start = time.perf_counter()
        result = index.search_embeddings(query[None], k=k)
        latencies.append(time.perf_counter() - start)
        tops.append(result.indices[0])
    return np.array(latencies) * 1000, torch.stack(tops)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch and FAISS threads (default: torch's)")
    parser.add_argument("--data", nargs="+", default=["clip-like", "noisy-copies"], choices=["clip-like", "noisy-copies"])
    args = parser.parse_args(argv)
    try:
        import faiss  # noqa: F401

        have_faiss = True
    except ImportError:
        have_faiss = False
        print("faiss is not importable: only the exact backend is measured (pip install tireid-hf[faiss])")
    from tireid_hf.retrieval.index import default_faiss_settings

    if args.threads:
        torch.set_num_threads(args.threads)
        if have_faiss:
            faiss.omp_set_num_threads(args.threads)

    nlist = int(default_faiss_settings(args.gallery)[0][3:].split(",")[0])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}, {os.cpu_count()} cores; "
          f"gallery {args.gallery:,} x {args.dim}, {args.queries} single queries, k={args.k}; "
          f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for data in args.data:
        gallery, queries, owner, truth = (clip_like if data == "clip-like" else noisy_copies)(args.gallery, args.dim, args.queries)
        print(f"\n**{data}**\n")
        print("| setting | build (s) | p50 per query (ms) | p95 (ms) | recall@10 vs exact float32 | true item in top-10 | memory read (MB) |")
        print("|---|---|---|---|---|---|---|")
        exact_top = None
        for label, options, params_list in settings(have_faiss):
            if "faiss_factory" in options:
                options = {**options, "faiss_factory": options["faiss_factory"].format(nlist=nlist)}
            start = time.perf_counter()
            index = GalleryIndex(gallery, **options)
            build = time.perf_counter() - start
            for params in params_list:
                if params in ("x1", "x2", "x4"):  # the default number of probes, or more
                    params = f"nprobe={int(default_faiss_settings(args.gallery)[1].split('=')[1]) * int(params[1])}"
                if params:
                    index.set_faiss_params(params)
                latencies, tops = measure(index, queries, args.k)
                if exact_top is None:
                    exact_top = tops
                recall = np.mean([len(set(a.tolist()) & set(b.tolist())) / args.k for a, b in zip(tops, exact_top)])
                found = (owner[tops] == truth[:, None]).any(1).float().mean().item()
                memory = (index.search_backend.memory_bytes() or index.embeddings.nbytes) / 2**20
                p50, p95 = np.percentile(latencies, [50, 95])
                name = f"{label} ({index.search_backend.settings().get('faiss_factory', '')} {index.faiss_params})" if index.faiss_params is not None else label
                print(f"| {name} | {build:.1f} | {p50:.2f} | {p95:.2f} | {recall:.3f} | {found:.3f} | {memory:.0f} |", flush=True)
    print(f"\nload average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
