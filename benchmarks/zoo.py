"""Train and evaluate every method of the zoo on the synthetic dataset with the same budget and seeds.

Each run is ``train.py --config configs/<method>_synthetic.yaml --seed S`` (the configs share one
protocol: data, pretrained base, sampler, optimiser, schedule and epoch budget); ablation runs add ``--model_config`` overrides. Runs go
to ``--runs`` (one folder each, reused when its results.json exists) and execute ``--workers`` at a
time with one torch thread each. The tables (mean and sample standard deviation over seeds of the
TEST metrics, first stage and re-ranked for CADA, and each method's ΔR@1 / ΔmAP against the baseline
with a paired identity-bootstrap 95 % interval pooled over the seeds; each ablation against its full
method) are printed and written to ``--summary`` as JSON.

    python benchmarks/zoo.py --seeds 0 1 2 --workers 2                        # the method comparison
    python benchmarks/zoo.py --seeds 0 --ablations --budget 0.34 --workers 2  # one row per component

``--budget F`` scales every config's epochs (and its warm-up, milestones and validation interval)
by F, so that a cheaper set of runs keeps each schedule's shape; with ``--ablations`` the full
method is run again at that budget, so every ablation row has its own reference row.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from tireid_hf.metrics import paired_bootstrap
from tireid_hf.methods import method_names

REPO = Path(__file__).resolve().parents[1]
METHODS = tuple(method_names())  # the registry's: a method missing from ABLATIONS fails tests/test_method_registry.py
KEYS = ("R1", "R5", "R10", "mAP", "mINP")
BASELINE = "clip_reid"
PER_QUERY_FILE = "test_per_query.json"  # written by the training loop next to results.json
DELTA_KEYS = {"R1": "R1", "mAP": "AP"}  # reported difference -> per-query value it averages
# One row per component: the config overrides that switch it off.
ABLATIONS = {
    "clip_reid": {"no ID loss": {"id_loss_weight": 0.0}},
    "lcr2s": {
        "no teacher (student alone)": {"use_teacher": False},
        "no support set": {"support_size": 0},
        "no feature distillation": {"distill_feature_loss_weight": 0.0},
        "no relation distillation": {"distill_relation_loss_weight": 0.0},
    },
    "cada": {
        "no local matching": {"itm_local_loss_weight": 0.0},
        "no matching (ATP)": {"itm_global_loss_weight": 0.0, "itm_local_loss_weight": 0.0},
        "no ARA": {"ara_loss_weight": 0.0},
    },
    "lgur": {
        "no dictionary": {"use_dictionary": False, "rank_text_dict_loss_weight": 0.0},
        "no foreground weighting": {"use_foreground_weighting": False},
        "no cross-modality guidance": {"use_cross_modality_guidance": False},
        "one prototype": {"num_prototypes": 1},
    },
    "uit": {
        "no restoration (TIR)": {"use_tir": False, "tir_loss_weight": 0.0},
        "no triplet": {"triplet_loss_weight": 0.0},
        "no key-word augmentation": {"key_word_augmentation_probability": 0.0},
    },
}


def budget_arguments(method: str, budget: float) -> list[str]:
    """Command-line overrides scaling the method's synthetic config's epochs by ``budget``."""
    if budget == 1.0:
        return []
    return scaled_epoch_arguments(yaml.safe_load((REPO / "configs" / f"{method}_synthetic.yaml").read_text()), budget)


def scaled_epoch_arguments(config: dict, budget: float) -> list[str]:
    """Overrides of every epoch count of a training `config` (epochs, warm-up, evaluation cadence,
    step-decay milestones) multiplied by ``budget``."""
    arguments = ["--num_train_epochs", f"{config['num_train_epochs'] * budget:.4g}",
                 "--warmup_epochs", f"{config.get('warmup_epochs', 0) * budget:.4g}",
                 "--eval_epochs", f"{config.get('eval_epochs', 1) * budget:.4g}"]
    if config.get("lr_milestones_epochs"):
        arguments += ["--lr_milestones_epochs", *(f"{epoch * budget:.4g}" for epoch in config["lr_milestones_epochs"])]
    return arguments


def run_name(method: str, seed: int, variant: str = "", budget: float = 1.0) -> str:
    """The folder name of one run under ``--runs``."""
    return (f"{method}-seed{seed}" + (f"-budget{budget:g}" if budget != 1.0 else "")
            + (f"-{variant.replace(' ', '_').replace('(', '').replace(')', '')}" if variant else ""))


def run_one(runs: Path, method: str, seed: int, variant: str, overrides: dict, budget: float = 1.0) -> dict:
    """One training run (or its cached results)."""
    name = run_name(method, seed, variant, budget)
    out = runs / name
    if (out / "results.json").is_file():
        return json.loads((out / "results.json").read_text())
    command = [sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs" / f"{method}_synthetic.yaml"),
               "--seed", str(seed), "--output_dir", str(out), "--overwrite_output_dir", "--report_to", "none"]
    if overrides:
        command += ["--model_config", json.dumps(overrides)]
    command += budget_arguments(method, budget)
    started = time.perf_counter()
    log = runs / f"{name}.log"
    with log.open("w") as stream:
        completed = subprocess.run(command, cwd=REPO, stdout=stream, stderr=subprocess.STDOUT,
                                   env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    if completed.returncode:
        raise RuntimeError(f"{name} failed (exit {completed.returncode}); see {log}")
    print(f"{name}: done in {time.perf_counter() - started:.0f} s", flush=True)
    return json.loads((out / "results.json").read_text())


def summarise(results: list[dict], key: str = "test") -> dict:
    """Mean and sample standard deviation over runs of each t2i metric of ``results[i][key]``."""
    summary = {}
    for metric in KEYS:
        values = [result[key][f"t2i/{metric}"] for result in results]
        summary[metric] = (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
    summary["train_minutes"] = statistics.mean(result["train_runtime_seconds"] for result in results) / 60
    summary["runs"] = len(results)
    return summary


def paired_differences(runs: Path, names: list[str], reference_names: list[str]) -> dict[str, str]:
    """``"R1"`` / ``"mAP"`` -> ``"+d [low, high]"``: the runs ``names`` minus the runs ``reference_names``
    (paired seed by seed, in order) on the same test queries, with the 95 % paired identity-bootstrap
    interval pooled over the pairs (:func:`tireid_hf.metrics.paired_bootstrap`). Empty when a run has no
    per-query file (trained before the loop wrote one)."""
    files = [runs / name / PER_QUERY_FILE for name in [*names, *reference_names]]
    if not all(path.is_file() for path in files):
        return {}
    loaded = [json.loads(path.read_text())["t2i"] for path in files]
    pids = loaded[0]["pid"]
    if any(entry["pid"] != pids for entry in loaded):
        raise ValueError(f"runs {names} and {reference_names} were not evaluated on the same test queries")
    ours, theirs = loaded[:len(names)], loaded[len(names):]
    return {key: str(paired_bootstrap([run[value] for run in ours], [run[value] for run in theirs], pids))
            for key, value in DELTA_KEYS.items()}


def table(rows: dict[str, dict], first_column: str = "run", differences: dict[str, dict] | None = None,
          against: str = "the baseline") -> str:
    """Markdown: one row per summary, ``mean ± std`` cells (the mean alone for a single run)."""
    differences = differences or {}
    extra = [f"Δ{key} vs {against} [95% CI]" for key in DELTA_KEYS] if differences else []
    lines = [f"| {first_column} | " + " | ".join([*KEYS, *extra]) + " | train min |",
             "|---|" + "---|" * (len(KEYS) + len(extra) + 1)]
    for name, summary in rows.items():
        cells = [f"{summary[k][0]:.2f}" + (f" ± {summary[k][1]:.2f}" if summary["runs"] > 1 else "") for k in KEYS]
        if differences:
            cells += [differences.get(name, {}).get(key, "—") for key in DELTA_KEYS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {summary['train_minutes']:.1f} |")
    return "\n".join(lines)


def run_jobs(runs: Path, jobs: list[tuple], budget: float, workers: int) -> list[tuple[tuple, dict]]:
    """``(job, results)`` for each ``job = (method, seed, variant, overrides)``, ``workers`` at a time."""
    runs.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda job: (job, run_one(runs, *job, budget=budget)), jobs))


def compare(runs: Path, methods, seeds, workers: int) -> dict:
    """Every method at the full budget over ``seeds``: ``{"rows", "reranked", "results"}`` where
    ``results[method]`` lists the runs' results.json contents (with their validation histories)."""
    outcomes = run_jobs(runs, [(method, seed, "", {}) for method in methods for seed in seeds], 1.0, workers)
    results = {method: [result for (m, *_), result in outcomes if m == method] for method in methods}
    rows, reranked, differences = {}, {}, {}
    baseline_runs = [run_name(BASELINE, seed) for seed in seeds]
    for method, method_results in results.items():
        rows[method] = summarise(method_results)
        if "test_reranked" in method_results[0]:
            reranked[f"{method} (re-ranked)"] = summarise(method_results, "test_reranked")
        if method != BASELINE and BASELINE in methods:
            differences[method] = paired_differences(runs, [run_name(method, seed) for seed in seeds], baseline_runs)
    return {"seeds": list(seeds), "budget": 1.0, "rows": rows, "reranked": reranked, "differences": differences,
            "results": results}


def ablate(runs: Path, methods, seed: int, budget: float, workers: int) -> dict:
    """Each method and one run per component switched off (``ABLATIONS``), one seed, at ``budget``."""
    jobs = [(method, seed, variant, overrides)
            for method in methods for variant, overrides in [("", {}), *ABLATIONS[method].items()]]
    rows, differences = {}, {}
    for (method, _, variant, _), result in run_jobs(runs, jobs, budget, workers):
        label = method + (f": {variant}" if variant else "")
        rows[label] = summarise([result])
        if "test_reranked" in result:
            rows[f"{label} (re-ranked)"] = summarise([result], "test_reranked")
        if variant:  # against the full method at the same budget and seed
            differences[label] = paired_differences(runs, [run_name(method, seed, variant, budget)],
                                                    [run_name(method, seed, "", budget)])
    return {"seeds": [seed], "budget": budget, "rows": rows, "differences": differences}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--ablations", action="store_true", help="run each method's ablation rows (first seed)")
    parser.add_argument("--budget", type=float, default=1.0, help="fraction of each config's epochs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=REPO / "benchmarks" / "runs")
    parser.add_argument("--summary", type=Path, default=REPO / "benchmarks" / "zoo_summary.json")
    args = parser.parse_args()
    if args.ablations:
        summary = ablate(args.runs, args.methods, args.seeds[0], args.budget, args.workers)
        print(table(summary["rows"], differences=summary["differences"], against="the full method"))
    else:
        if args.budget != 1.0:
            parser.error("--budget applies to --ablations; the comparison runs the full budget")
        summary = compare(args.runs, args.methods, args.seeds, args.workers)
        summary.pop("results")
        print(table({**summary["rows"], **summary["reranked"]}, differences=summary["differences"]))
    args.summary.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
