"""Regenerate the whole model zoo report with one command: ``make report`` runs this script.

1. the equal tuning sweep: every method at its 3 settings (head learning-rate multiplier and main
   auxiliary loss weight, ``zoo.sweep_settings``), seed 0, half the budget, chosen on VALIDATION R@1 and written into
   ``configs/<method>_synthetic.yaml`` (``zoo.sweep``);
2. the method comparison: every method x seeds 0, 1 (``SEEDS``) at the full budget (``zoo.comparison_jobs``, summarised by
   ``zoo.comparison_summary``), with
   ΔR@1 / ΔmAP against the baseline and paired identity-bootstrap 95 % intervals;
3. the ablations: one run per row of each config class's ``zoo_ablations`` (a component off; ``none of its
   additions``; the row of the paper's own contribution, ``zoo_contribution``), seed 0, the sweep's budget,
   each against the sweep's chosen run of its method (``zoo.ablation_jobs`` / ``zoo.ablation_summary``);
   the baseline (seed 0) trained at the sweep's budget times each method's wall-clock minutes over its own
   (``matched_jobs``), against the method's sweep run, and at the old K = 2 instances per identity; 2 and 3
   are trained in one pool of workers;
4. the training cost of each method (``bench_training``) and 5. its inference cost (``bench_inference``);
6. the figures in ``benchmarks/figures/``: validation R@1 against epoch per method (mean over seeds,
   min-max band) and, per method, the ranked results of the same 4 test queries (``tireid visualize``
   on the seed-0 model);
7. the JSON documents next to this script (``report_text.DOCUMENTS``: the summaries, ``zoo_histories.json`` with every
   comparison and ablation run's curve, and ``zoo_report.json`` with the phases and machine), then, rendered
   from them alone (``report_text.render``), the generated block of ``benchmarks/RESULTS.md`` and the README's zoo block
   (the table, with the papers' reported figures from each config class's ``zoo_reported`` beside ours, and
   the paragraphs under it).

Training runs go to ``--runs`` and are reused when their ``results.json`` exists and records the
arguments asked for now (delete the folder to retrain everything); the report states how many were trained now and how long each phase took.
The benchmarks time the CPU: run the report on an otherwise idle machine.

    python benchmarks/report.py [--runs benchmarks/runs] [--workers 2] [--summaries-only]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import matplotlib
import torch
import yaml

matplotlib.use("Agg")
from matplotlib import pyplot  # noqa: E402  (after choosing the file-only backend)

import bench_inference  # noqa: E402
import bench_training  # noqa: E402
import report_text  # noqa: E402
import zoo  # noqa: E402
from tireid_hf.cli import main as tireid  # noqa: E402

REPO = zoo.REPO
BENCHMARKS = REPO / "benchmarks"
FIGURES = BENCHMARKS / "figures"
# Two seeds for the comparison: with a third, make report does not fit 90 minutes on 2 cores (RESULTS.md, "Reading
# the zoo report").
SEEDS = (0, 1)
RANKED_QUERIES = 4


class Phases:
    """Wall-clock seconds of each named phase, printed as each ends."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        print(f"[report] {name} ...", flush=True)
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start
        print(f"[report] {name}: {self.seconds[name] / 60:.1f} min", flush=True)


def validation_curve(result: dict) -> tuple[list[float], list[float]]:
    """(epochs, validation R@1) of one run; the epoch of an evaluation is its step over the run's
    last step times the run's whole budget (``num_train_epochs`` x number of stages), so that
    LCR²S's teacher and student stages lie end to end."""
    evaluations = [entry for entry in result["history"] if entry["kind"] == "validation"]
    stages = 1 + max(entry["stage"] for entry in evaluations)
    budget = result["config"]["training"]["num_train_epochs"] * stages
    last_step = max(entry["step"] for entry in result["history"])
    return ([entry["step"] / last_step * budget for entry in evaluations],
            [entry["metrics"]["t2i/R1"] for entry in evaluations])


def plot_validation_curves(histories: dict[str, dict], path: Path) -> None:
    """One line per method over its comparison runs in ``histories`` (``zoo_histories.json``): validation
    R@1 averaged over the runs at each evaluation, the band between their minimum and maximum (runs of a
    method share their evaluation epochs)."""
    runs: dict[str, list[dict]] = {}
    for history in histories.values():
        if history["kind"] == "comparison":
            runs.setdefault(history["method"], []).append(history)
    figure, axes = pyplot.subplots(figsize=(8, 4.5), dpi=120)
    for method, method_runs in runs.items():
        epochs = [point["epoch"] for point in method_runs[0]["validation"]]
        values = list(zip(*([point["R1"] for point in run["validation"]] for run in method_runs)))
        mean = [statistics.mean(column) for column in values]
        line, = axes.plot(epochs, mean, marker="o", markersize=2.5, label=f"{method} ({len(method_runs)} seeds)")
        axes.fill_between(epochs, [min(column) for column in values], [max(column) for column in values],
                          color=line.get_color(), alpha=0.15, linewidth=0)
    axes.set_xlabel("epoch of the budget (LCR²S: the teacher's stage, then the student's, end to end)")
    axes.set_ylabel("validation R@1 (%)")
    axes.set_title("Validation R@1 during training (synthetic data; mean, min-max band over seeds)")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


def ranked_figures(runs: Path, methods) -> None:
    """``tireid visualize`` on each method's seed-0 model into ``figures/ranked_<method>.png``: the
    same test queries for every method."""
    for method in methods:
        model = os.path.relpath(runs / f"{method}-seed0")  # relative: the figure's title shows it
        tireid(["visualize", "--model", model, "--dataset", "synthetic", "--split", "test",
                "--num-queries", str(RANKED_QUERIES), "--seed", "0", "--output", str(FIGURES / f"ranked_{method}.png")])


OLD_K = 2  # the protocol's instances per identity before LCR²S's support set was exercised


def run_history(kind: str, method: str, row: str, seed: int, budget: float, result: dict) -> dict:
    """What ``zoo_histories.json`` keeps of one run: its validation curve (epoch of the budget, R@1,
    mAP), best step, whether the best was the last evaluation, the best evaluation's head metrics
    (every non-retrieval metric), the re-rank decision, minutes and backbone gradient norms."""
    evaluations = [entry for entry in result["history"] if entry["kind"] == "validation"]
    epochs, _ = validation_curve(result)
    best = result["best_validation"]
    return {"kind": kind, "method": method, "row": row, "seed": seed, "budget": budget,
            "validation": [{"stage": entry["stage"], "step": entry["step"], "epoch": round(epoch, 4),
                            "R1": entry["metrics"]["t2i/R1"], "mAP": entry["metrics"]["t2i/mAP"]}
                           for entry, epoch in zip(evaluations, epochs)],
            "best": {"stage": best["stage"], "step": best["step"], "R1": best["metrics"]["t2i/R1"]},
            "best_is_last": (best["stage"], best["step"]) == (evaluations[-1]["stage"], evaluations[-1]["step"]),
            "head_metrics": {key: value for key, value in best["metrics"].items() if not key.startswith("t2i/")},
            "rerank": {"used": "test_reranked" in result, "skipped_because": result.get("rerank_skipped"),
                       "validation_reranked_R1": result.get("validation_reranked", {}).get("t2i/R1")},
            "train_minutes": result["train_runtime_seconds"] / 60,
            "backbone_gradient_norms": result.get("backbone_gradient_norms", [])}


def matched_jobs(runs: Path, sweep: dict, methods) -> list[tuple[tuple, float, float]]:
    """``(job, budget, ratio)``: the baseline (the sweep's seed and setting) at the sweep's budget times each
    method's training minutes over the baseline's, the ratio read from the two methods' chosen sweep runs;
    methods within 10 % of the baseline are left out."""
    minutes = {method: json.loads((runs / sweep["chosen"][method]["run"] / "results.json").read_text())["train_runtime_seconds"]
               for method in methods}
    jobs = []
    for method in methods:
        ratio = minutes[method] / minutes[zoo.BASELINE]
        if method != zoo.BASELINE and ratio > 1.1:
            jobs.append(((zoo.BASELINE, zoo.SWEEP_SEED, f"minutes of {method}", {}, ()),
                         round(zoo.SWEEP_BUDGET * ratio, 2), ratio))
    return jobs


def compute_matched_summary(runs: Path, matched, outcomes) -> dict:
    """Per method: the ratio, the baseline's budget and minutes, and the ΔR@1 / ΔmAP of the method's
    sweep run against the baseline's sweep run (same epochs) and against the baseline at the same minutes."""
    rows = {}
    for (job, budget, ratio), (_, result) in zip(matched, outcomes):
        method = job[2].removeprefix("minutes of ")
        method_run = [zoo.run_name(method, zoo.SWEEP_SEED, zoo.chosen_setting(method)[0], zoo.SWEEP_BUDGET)]
        baseline_run = zoo.run_name(zoo.BASELINE, zoo.SWEEP_SEED, zoo.chosen_setting(zoo.BASELINE)[0], zoo.SWEEP_BUDGET)
        rows[method] = {"ratio": ratio, "budget": budget, "train_minutes": result["train_runtime_seconds"] / 60,
                        "same_epochs": zoo.paired_differences(runs, method_run, [baseline_run]),
                        "same_minutes": zoo.paired_differences(runs, method_run, [zoo.run_name(*job[:3], budget)])}
    return {"seed": zoo.SWEEP_SEED, "budget": zoo.SWEEP_BUDGET, "rows": rows}


def protocol_k_summary(runs: Path, old: dict, new: dict, new_k: int) -> dict:
    """The baseline at the old K against the new (seed 0, full budget): best validation R@1 / mAP, paired test difference."""
    return {"old_k": OLD_K, "new_k": new_k,
            "old_validation_R1": old["best_validation"]["metrics"]["t2i/R1"], "new_validation_R1": new["best_validation"]["metrics"]["t2i/R1"],
            "old_validation_mAP": old["best_validation"]["metrics"]["t2i/mAP"], "new_validation_mAP": new["best_validation"]["metrics"]["t2i/mAP"],
            "test_difference": zoo.paired_differences(runs, [zoo.run_name(zoo.BASELINE, 0)], [zoo.run_name(zoo.BASELINE, 0, f"K{OLD_K}")])}


def train_and_summarise(runs: Path, methods, workers: int, phases: Phases, train_missing: bool = True) -> dict:
    """Phases 1-3 (each run trained, or reused when cached): the documents ``sweep``, ``comparison``,
    ``ablations`` and ``histories``; the sweep's choices written into the configs."""
    with phases("sweep (validation only)"):
        sweep = zoo.sweep(runs, methods, workers, train_missing=train_missing)
        for method, row in sweep["chosen"].items():
            zoo.write_choice(method, row["head_learning_rate_multiplier"], row["weight"])
        print(zoo.sweep_table(sweep), flush=True)
    new_k = yaml.safe_load((REPO / "configs" / f"{zoo.BASELINE}_synthetic.yaml").read_text())["instances_per_identity"]
    with phases(f"method comparison ({len(SEEDS)} seeds), ablations, compute-matched and old-K baselines"):
        # all only need the sweep's choices: trained in ONE pool so that no worker idles while runs wait
        comparison_jobs = zoo.comparison_jobs(methods, SEEDS)
        owned = zoo.ablation_jobs(methods, zoo.SWEEP_SEED)
        matched = matched_jobs(runs, sweep, methods)
        protocol_job = (zoo.BASELINE, 0, f"K{OLD_K}", {}, ("--instances_per_identity", str(OLD_K)))
        jobs = comparison_jobs + [job for _, job in owned] + [job for job, _, _ in matched] + [protocol_job]
        budgets = [1.0] * len(comparison_jobs) + [zoo.SWEEP_BUDGET] * len(owned) + [budget for _, budget, _ in matched] + [1.0]
        outcomes = zoo.run_jobs(runs, jobs, budgets, workers, train_missing)
        ends = list(itertools.accumulate([len(comparison_jobs), len(owned), len(matched)]))
        comparison_outcomes, ablation_outcomes = outcomes[:ends[0]], outcomes[ends[0]:ends[1]]
        matched_outcomes, protocol_outcome = outcomes[ends[1]:ends[2]], outcomes[-1]
        comparison = zoo.comparison_summary(runs, methods, SEEDS, comparison_outcomes)
        comparison.pop("results")
        ablations = zoo.ablation_summary(runs, zoo.SWEEP_SEED, zoo.SWEEP_BUDGET, [owner for owner, _ in owned],
                                         ablation_outcomes)
        comparison["compute_matched"] = compute_matched_summary(runs, matched, matched_outcomes)
        baseline_seed0 = next(result for job, result in comparison_outcomes if job[:2] == (zoo.BASELINE, 0))
        comparison["protocol_k"] = protocol_k_summary(runs, protocol_outcome[1], baseline_seed0, new_k)
    histories = {}
    for (job, result) in comparison_outcomes:
        histories[zoo.run_name(*job[:3])] = run_history("comparison", job[0], job[0], job[1], 1.0, result)
    for owner, (job, result) in zip([owner for owner, _ in owned], ablation_outcomes):
        histories[zoo.run_name(*job[:3], zoo.SWEEP_BUDGET)] = run_history(
            "ablation", owner, zoo.ablation_label(owner, job), job[1], zoo.SWEEP_BUDGET, result)
    for (job, budget, _), (_, result) in zip(matched, matched_outcomes):
        histories[zoo.run_name(*job[:3], budget)] = run_history("compute-matched", job[0], job[2], job[1], budget, result)
    histories[zoo.run_name(*protocol_job[:3])] = run_history("old K", zoo.BASELINE, protocol_job[2], 0, 1.0, protocol_outcome[1])
    return {"sweep": sweep, "comparison": comparison, "ablations": ablations, "histories": histories}


def write_documents(documents: dict) -> None:
    """The JSON documents next to this script, then RESULTS.md's block and the README's block rendered from them."""
    for name, file in report_text.DOCUMENTS.items():
        (BENCHMARKS / file).write_text(json.dumps(documents[name], indent=2))
    block, table = report_text.render(report_text.load_documents(BENCHMARKS))
    report_text.replace_block(BENCHMARKS / "RESULTS.md", report_text.MARKERS["results"], block)
    report_text.replace_block(REPO / "README.md", report_text.MARKERS["readme"], table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=BENCHMARKS / "runs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--summaries-only", action="store_true",
                        help="re-summarise the runs already in --runs (a missing one is an error: nothing is trained) "
                        "and re-render; the cost benchmarks, the figures and zoo_report.json (the phases of the "
                        "invocation that trained) are kept as committed")
    args = parser.parse_args()
    methods = list(zoo.METHODS)
    if args.summaries_only:
        kept = report_text.load_documents(BENCHMARKS)
        documents = {**train_and_summarise(args.runs, methods, args.workers, Phases(), train_missing=False),
                     **{name: kept[name] for name in ("meta", "training", "inference")}}
        write_documents(documents)
        print(f"[report] re-summarised {len(documents['histories'])} runs and re-rendered RESULTS.md and README.md")
        return
    FIGURES.mkdir(exist_ok=True)
    phases = Phases()
    started, started_at = time.perf_counter(), time.time()
    documents = train_and_summarise(args.runs, methods, args.workers, phases)
    trained_now = sum(path.stat().st_mtime >= started_at for path in args.runs.glob("*/results.json"))
    with phases("training cost"):
        documents["training"] = bench_training.run_all(methods, list(bench_training.SETUPS), steps=10, vit_steps=3, vit_batch=8)
    with phases("inference cost"):
        documents["inference"] = bench_inference.measure([m for m in methods if m != "clip_reid"], batch=8, repeats=5,
                                                         rerank_k=16)
    with phases("figures"):
        plot_validation_curves(documents["histories"], FIGURES / "validation_r1.png")
        ranked_figures(args.runs, methods)
    phases.seconds["total"] = time.perf_counter() - started
    total_runs = len(documents["histories"]) + sum(len(rows) for rows in documents["sweep"]["rows"].values()) - len(methods)
    documents["meta"] = {"date": datetime.date.today().isoformat(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
                         "torch": torch.__version__, "threads": torch.get_num_threads(), "phases": phases.seconds,
                         "trained_now": trained_now, "total_runs": total_runs, "workers": args.workers}
    write_documents(documents)
    print(report_text.comparison_table(documents["comparison"]))
    print(f"[report] wrote benchmarks/RESULTS.md, README.md's zoo table, benchmarks/figures/ and the configs' sweep "
          f"choices in {phases.seconds['total'] / 60:.1f} min ({trained_now} of {total_runs} training runs trained now)")


if __name__ == "__main__":
    main()
