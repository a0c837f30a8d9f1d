"""GalleryIndex.search_embeddings latency per query on 100,000 x 512-d gallery embeddings.

    PYTHONPATH=src python benchmarks/bench_gallery.py [--gallery 100000] [--queries 200]

One query at a time (the interactive case: a user types a sentence), p50 and p95 over ``--queries``
queries, for the exact backend and, when faiss is importable, FAISS HNSW32 (the default
approximate index, at efSearch 128 and 512) and FAISS Flat (exact, BLAS). Recall@10 of each backend against exact search and
the build time are reported too, with the share of queries whose source item is in the top-10. The text encoder is not timed: that cost is the model's, not the
index's. Queries are noisy copies of gallery items (cosine about 0.5 to their source), like real
caption-image pairs; random vectors in 512-d would make approximate search look worse than it is.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from tireid_hf.retrieval import GalleryIndex


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args(argv)

    generator = torch.Generator().manual_seed(0)
    gallery = torch.nn.functional.normalize(torch.randn(args.gallery, args.dim, generator=generator), dim=1)
    sources = torch.randint(args.gallery, (args.queries,), generator=generator)
    noise = torch.nn.functional.normalize(torch.randn(args.queries, args.dim, generator=generator), dim=1)
    queries = torch.nn.functional.normalize(gallery[sources] + 1.7 * noise, dim=1)

    backends = [("exact", {}, [""])]
    try:
        import faiss  # noqa: F401

        backends += [("faiss HNSW32", {"backend": "faiss"}, ["efSearch=128", "efSearch=512"]),
                     ("faiss Flat", {"backend": "faiss", "faiss_factory": "Flat", "faiss_params": ""}, [""])]
    except ImportError:
        print("faiss is not importable: only the exact backend is measured (pip install tireid-hf[faiss])")

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}; "
          f"gallery {args.gallery:,} x {args.dim}, {args.queries} single queries, k={args.k}; "
          f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("| backend | build (s) | p50 per query (ms) | p95 per query (ms) | recall@10 vs exact | source in top-10 |")
    print("|---|---|---|---|---|---|")
    exact_top = None
    for name, options, settings in backends:
        start = time.perf_counter()
        index = GalleryIndex(gallery, **options)
        build = time.perf_counter() - start
        for setting in settings:
            if setting:
                index.set_faiss_params(setting)
            index.search_embeddings(queries[:5], k=args.k)  # warm-up
            latencies, tops = [], []
            for query in queries:
                start = time.perf_counter()
                result = index.search_embeddings(query[None], k=args.k)
                latencies.append(time.perf_counter() - start)
                tops.append(result.indices[0])
            tops = torch.stack(tops)
            if exact_top is None:
                exact_top = tops
            recall = np.mean([len(set(a.tolist()) & set(b.tolist())) / args.k for a, b in zip(tops, exact_top)])
            found = (tops == sources[:, None]).any(1).float().mean().item()
            p50, p95 = np.percentile(np.array(latencies) * 1000, [50, 95])
            label = f"{name} ({setting})" if setting else name
            print(f"| {label} | {build:.1f} | {p50:.2f} | {p95:.2f} | {recall:.3f} | {found:.3f} |")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
