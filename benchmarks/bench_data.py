"""Time and peak memory of generating and preparing a CUHK-PEDES-sized synthetic dataset.

Each phase runs in a fresh process so its peak memory is its own. Two peaks are reported: the
resident set (ru_maxrss, which also counts pages of memory-mapped Arrow files that were read) and
the anonymous (heap) memory, RssAnon from /proc/self/status sampled every 20 ms:

1. generate   `load_tireid_dataset("synthetic", ...)` writes the rows to a `datasets` cache
2. prepare    reload that cache and write Parquet shards with embedded images (`prepare_dataset`)
3. export     `export_cuhk_format`: the same set as reid_raw.json + imgs/ PNG files
4. read+prep  `load_tireid_dataset("cuhk-pedes", raw)` (existence + PIL verify of every image), then Parquet

    PYTHONPATH=src HF_HUB_OFFLINE=1 python benchmarks/bench_data.py               # CUHK size: 13,003 ids, 39,009 images
    PYTHONPATH=src HF_HUB_OFFLINE=1 python benchmarks/bench_data.py --fraction 0.1
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

CUHK_IDS = {"num_train_ids": 11003, "num_validation_ids": 1000, "num_test_ids": 1000}


class _AnonPeak(threading.Thread):
    """Samples this process's anonymous resident memory (RssAnon, Linux) until stopped; `peak` in MiB."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.running = 0.0, True

    def run(self):
        while self.running:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    self.peak = max(self.peak, int(line.split()[1]) / 1024)
            time.sleep(0.02)


def _phase(name: str, config: dict, work: str, num_proc: int | None, queue) -> None:
    from tireid_hf.data import load_tireid_dataset
    from tireid_hf.data.prepare import prepare_dataset
    from tireid_hf.data.synthetic import export_cuhk_format

    work = Path(work)
    anon = _AnonPeak()
    anon.start()
    start = time.perf_counter()
    if name == "generate":
        load_tireid_dataset("synthetic", cache_dir=str(work / "cache"), num_proc=num_proc, **config)
    elif name == "prepare":
        ds = load_tireid_dataset("synthetic", cache_dir=str(work / "cache"), **config)
        prepare_dataset(ds, work / "parquet-synthetic", name="synthetic")
    elif name == "export":
        export_cuhk_format(work / "raw", **config)
    elif name == "read+prepare":
        prepare_dataset(load_tireid_dataset("cuhk-pedes", work / "raw"), work / "parquet-cuhk", name="cuhk-pedes")
    seconds = time.perf_counter() - start
    anon.running = False
    anon.join()
    queue.put((seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, anon.peak))


def _size_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fraction", type=float, default=1.0, help="scale the CUHK identity counts by this")
    parser.add_argument("--images-per-id", type=int, default=3)
    parser.add_argument("--num-proc", type=int, default=None, help="generation workers (phase 1 only)")
    parser.add_argument("--phases", default="generate,prepare,export,read+prepare")
    parser.add_argument("--workdir", default=None, help="scratch folder (default: a temporary one, deleted)")
    args = parser.parse_args()

    config = {k: max(1, round(v * args.fraction)) for k, v in CUHK_IDS.items()}
    config["images_per_id"] = args.images_per_id
    images = sum(config[k] for k in CUHK_IDS) * args.images_per_id
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-data-"))
    print(f"{platform.processor() or platform.machine()}, {multiprocessing.cpu_count()} cores; config {config}; {images} images")
    print("| phase | seconds | images/s | peak RSS (MiB) | peak anonymous RSS (MiB) |")
    print("|---|---:|---:|---:|---:|")
    ctx = multiprocessing.get_context("spawn")
    try:
        for name in args.phases.split(","):
            queue = ctx.Queue()
            proc = ctx.Process(target=_phase, args=(name, config, str(work), args.num_proc, queue))
            proc.start()
            seconds, peak, anon_peak = queue.get()
            proc.join()
            print(f"| {name} | {seconds:.1f} | {images / seconds:.0f} | {peak:.0f} | {anon_peak:.0f} |", flush=True)
        for folder in ("parquet-synthetic", "raw", "parquet-cuhk"):
            if (work / folder).exists():
                print(f"{folder}: {_size_mib(work / folder):.0f} MiB")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
