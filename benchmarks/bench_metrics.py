"""rank_metrics vs. a straightforward reference that argsorts every row, side by side in one run.

    PYTHONPATH=src python benchmarks/bench_metrics.py            # CUHK-PEDES-sized: 6,156 x 3,074
    PYTHONPATH=src python benchmarks/bench_metrics.py --large    # + rank_metrics alone on 20,000 x 20,000
    PYTHONPATH=src python benchmarks/bench_metrics.py --threads 1 2   # each with 1, then 2 torch threads

Each measurement runs in a fresh subprocess so that its peak memory is its own: "extra memory" is the
peak resident set size during the call minus the resident size just before it (input already built).
The reference is the vectorised evaluation most TIReID code bases use (IRRA's ``rank``): a full
``argsort`` of every row, the pids gathered in that order, cumulative sums for AP and INP.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import psutil
import torch


def make_problem(num_queries: int, num_gallery: int, relevant_per_query: int = 2, seed: int = 0):
    """Gallery of num_gallery / relevant_per_query identities; relevant pairs get a score boost."""
    generator = torch.Generator().manual_seed(seed)
    gallery_pids = torch.arange(num_gallery) // relevant_per_query
    gallery_pids = gallery_pids[torch.randperm(num_gallery, generator=generator)]
    query_pids = gallery_pids[torch.randint(num_gallery, (num_queries,), generator=generator)]
    similarity = torch.empty(num_queries, num_gallery)
    similarity.normal_(generator=generator)
    # Boost the relevant pairs so the metrics are in a realistic range, not ~0. No [Q, G] temporary,
    # so that the set-up's memory peak stays below the measured call's.
    items_by_pid = torch.argsort(gallery_pids).view(-1, relevant_per_query)
    rows = torch.arange(num_queries).repeat_interleave(relevant_per_query)
    similarity[rows, items_by_pid[query_pids].flatten()] += 2.5
    return similarity, query_pids, gallery_pids


def reference_rank_metrics(similarity, query_pids, gallery_pids, ks=(1, 5, 10)):
    """Argsort every row (stable), then the definitions; IRRA-style, whole matrix at once."""
    order = torch.argsort(similarity, dim=1, descending=True, stable=True)
    matches = (gallery_pids[order] == query_pids[:, None]).float()  # [Q, G] in ranked order
    cumulative = matches.cumsum(1)
    results = {f"R{k}": 100 * (cumulative[:, k - 1] > 0).float().mean().item() for k in ks}
    num_relevant = matches.sum(1)
    positions = torch.arange(1, matches.shape[1] + 1, dtype=torch.float32)
    results["mAP"] = 100 * ((cumulative / positions * matches).sum(1) / num_relevant).mean().item()
    last = matches.shape[1] - matches.flip(1).argmax(1)  # 1-based rank of the last relevant item
    results["mINP"] = 100 * (num_relevant / last).mean().item()
    results["num_queries"] = matches.shape[0]
    return results


def measure(method: str, num_queries: int, num_gallery: int, repeats: int, threads: int) -> dict:
    """In this process: build the problem, then time `method` and record its peak extra memory."""
    from tireid_hf.metrics import rank_metrics

    torch.set_num_threads(threads)
    function = rank_metrics if method == "rank_metrics" else reference_rank_metrics
    similarity, query_pids, gallery_pids = make_problem(num_queries, num_gallery)
    baseline = psutil.Process().memory_info().rss
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        results = function(similarity, query_pids, gallery_pids)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "method": method,
        "threads": threads,
        "shape": [num_queries, num_gallery],
        "median_s": statistics.median(times),
        "min_s": min(times),
        "extra_peak_mib": max(0, peak - max(baseline, peak_before)) / 2**20,
        "input_mib": similarity.numel() * similarity.element_size() / 2**20,
        "results": results,
    }


def run_child(method: str, num_queries: int, num_gallery: int, repeats: int, threads: int) -> dict:
    command = [sys.executable, __file__, "--child", method, str(num_queries), str(num_gallery), str(repeats), str(threads)]
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--large", action="store_true", help="also rank_metrics alone on 20,000 x 20,000")
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()], help="torch threads")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        method, num_queries, num_gallery, repeats, threads = args.child
        print(json.dumps(measure(method, int(num_queries), int(num_gallery), int(repeats), int(threads))))
        return

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {platform.machine()}; load average before: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("| function | similarity | torch threads | median time (s) | min (s) | speed-up (median) | extra peak memory (MiB) | input (MiB) |")
    print("|---|---|---|---|---|---|---|---|")
    for threads in args.threads:
        ours, reference = (run_child(method, 6156, 3074, args.repeats, threads) for method in ("rank_metrics", "reference"))
        for key in ours["results"]:
            assert abs(ours["results"][key] - reference["results"][key]) < 1e-3, (key, ours["results"], reference["results"])
        rows = [(ours, f"{reference['median_s'] / ours['median_s']:.1f}x"), (reference, "1x")]
        if args.large:
            rows.append((run_child("rank_metrics", 20000, 20000, 1, threads), ""))
        for row, speed_up in rows:
            shape = " x ".join(f"{n:,}" for n in row["shape"])
            print(f"| {row['method']} | {shape} | {threads} | {row['median_s']:.3f} | {row['min_s']:.3f} | {speed_up} "
                  f"| {row['extra_peak_mib']:.0f} | {row['input_mib']:.0f} |")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}; same numbers from both: {ours['results']}")


if __name__ == "__main__":
    main()
