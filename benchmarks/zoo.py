"""Train and evaluate every method of the zoo on the synthetic dataset under one protocol.

Each run is ``train.py --config configs/<method>_synthetic.yaml --seed S`` (the configs share one
protocol: data, pretrained base, sampler, optimiser, schedule and epoch budget), plus command-line
overrides for the sweep's settings and the ablations. Runs go to ``--runs`` (one folder each, reused
when its results.json exists and was trained with exactly the arguments asked for now) and execute
``--workers`` at a time with one torch thread each, the most expensive first (``by_cost``).

1. ``sweep``: the equal tuning budget. Every method, the baseline included, is trained at each of
   its sweep settings (its head learning-rate multiplier and the weight of its main auxiliary loss,
   the fields its config class names in ``zoo_sweep``; 3 settings: ``sweep_settings``), seed 0, at
   ``SWEEP_BUDGET`` of the epochs; the setting with the best
   VALIDATION R@1 is chosen (the test split is never read to choose) and written into the config.
2. ``compare``: every method at the full budget over the seeds: mean and sample standard
   deviation of the TEST metrics (first stage and re-ranked for CADA) and each method's ΔR@1 /
   ΔmAP against the baseline with a paired identity-bootstrap 95 % interval pooled over the seeds.
3. ``ablate``: one run per component switched off (its config class's ``zoo_ablations``), seed 0,
   at the sweep's budget,
   each against its full method (the sweep's chosen run) with the same paired interval.

    python benchmarks/zoo.py --sweep --workers 2                              # 1 (writes the configs)
    python benchmarks/zoo.py --seeds 0 1 2 --workers 2                        # 2
    python benchmarks/zoo.py --seeds 0 --ablations --budget 0.5 --workers 2  # 3

``--budget F`` scales every config's epochs (and its warm-up, milestones and validation interval)
by F, so that a cheaper set of runs keeps each schedule's shape.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from tireid_hf.metrics import paired_bootstrap
from tireid_hf.methods import method_classes, method_names
from tireid_hf.training.arguments import parse_training_arguments

REPO = Path(__file__).resolve().parents[1]
TRAINING_COST = REPO / "benchmarks" / "training_cost.json"  # bench_training's results, written by the report
METHODS = tuple(method_names())  # the registry's: tests/test_method_registry.py checks each has its zoo facts
KEYS = ("R1", "R5", "R10", "mAP", "mINP")
BASELINE = "clip_reid"
PER_QUERY_FILE = "test_per_query.json"  # written by the training loop next to results.json
DELTA_KEYS = {"R1": "R1", "mAP": "AP"}  # reported difference -> per-query value it averages
# The equal tuning budget: every method gets the same 3 settings of its two knobs — its head learning-rate
# multiplier and the weight of its main auxiliary loss (the fields its config class names in ``zoo_sweep``,
# set together): the paper's weight (the fields' default) at x1 and x5, and half of it at x1
# (``sweep_settings``). Chosen on validation R@1 only.
SWEEP_BUDGET = 0.5
SWEEP_SEED = 0
HEAD_MULTIPLIERS = (1.0, 5.0)
WEIGHT_FRACTIONS = (1.0, 0.5)  # of the paper's weight
# Arguments that name where a run goes, not what it trains (ignored when a cached run is checked).
_PLACEMENT = {"output_dir", "overwrite_output_dir", "report_to", "resume_from_checkpoint"}


def ablations(method: str) -> dict[str, dict]:
    """The method's ablation rows (its config class's ``zoo_ablations``): label -> the model_config
    overrides that switch one component off."""
    return method_classes(method)[0].zoo_ablations


def sweep_keys(method: str) -> tuple[str, ...]:
    """The model_config fields the sweep sets together (its config class's ``zoo_sweep``)."""
    return method_classes(method)[0].zoo_sweep


def sweep_weights(method: str) -> tuple[float, ...]:
    """The auxiliary weights the sweep tries: the paper's (the default of the ``sweep_keys``, one value
    for all of them) times each of ``WEIGHT_FRACTIONS``; a ValueError when the keys name no field or
    their defaults differ."""
    config_class = method_classes(method)[0]
    keys = sweep_keys(method)
    if not keys or not set(keys) <= {field.name for field in dataclasses.fields(config_class)}:
        raise ValueError(f"{config_class.__name__}.zoo_sweep must name fields of the config, got {keys}")
    defaults = {getattr(config_class, key) for key in keys}
    if len(defaults) != 1:
        raise ValueError(f"{config_class.__name__}.zoo_sweep: the defaults of {keys} differ ({sorted(defaults)})")
    paper = float(defaults.pop())
    return tuple(paper * fraction for fraction in WEIGHT_FRACTIONS)


def budget_arguments(method: str, budget: float, epochs_factor: float = 1.0) -> list[str]:
    """Command-line overrides scaling the method's synthetic config's epochs by ``budget`` (and its
    ``num_train_epochs`` alone by ``epochs_factor`` on top: a longer run with the same warm-up and
    evaluation cadence)."""
    if budget == 1.0 and epochs_factor == 1.0:
        return []
    config = yaml.safe_load((REPO / "configs" / f"{method}_synthetic.yaml").read_text())
    return scaled_epoch_arguments(config, budget, epochs_factor)


def scaled_epoch_arguments(config: dict, budget: float, epochs_factor: float = 1.0) -> list[str]:
    """Overrides of every epoch count of a training `config` (epochs, warm-up, evaluation cadence,
    step-decay milestones) multiplied by ``budget``; ``num_train_epochs`` also by ``epochs_factor``."""
    arguments = ["--num_train_epochs", f"{config['num_train_epochs'] * budget * epochs_factor:.4g}",
                 "--warmup_epochs", f"{config.get('warmup_epochs', 0) * budget:.4g}",
                 "--eval_epochs", f"{config.get('eval_epochs', 1) * budget:.4g}"]
    if config.get("lr_milestones_epochs"):
        arguments += ["--lr_milestones_epochs", *(f"{epoch * budget:.4g}" for epoch in config["lr_milestones_epochs"])]
    return arguments


def run_name(method: str, seed: int, variant: str = "", budget: float = 1.0) -> str:
    """The folder name of one run under ``--runs`` (the variant's characters other than letters,
    digits, ``.`` and ``-`` become ``_``)."""
    return (f"{method}-seed{seed}" + (f"-budget{budget:g}" if budget != 1.0 else "")
            + (f"-{re.sub(r'[^A-Za-z0-9.-]+', '_', variant).strip('_')}" if variant else ""))


def training_command(runs: Path, method: str, seed: int, variant: str, overrides: dict, budget: float = 1.0,
                     arguments: tuple[str, ...] = ()) -> list[str]:
    """The ``train.py`` command line of one run (``arguments``: extra training-argument overrides)."""
    command = [sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs" / f"{method}_synthetic.yaml"),
               "--seed", str(seed), "--output_dir", str(runs / run_name(method, seed, variant, budget)),
               "--overwrite_output_dir", "--report_to", "none", *arguments]
    if overrides:
        command += ["--model_config", json.dumps(overrides)]
    return command + budget_arguments(method, budget, stage_count(method) / stage_count(method, overrides))


def stage_count(method: str, overrides: dict | None = None) -> int:
    """Training stages of the method's synthetic config with ``overrides`` on its model_config (the
    config class's ``stages``, one when it has none). A run whose overrides drop stages (LCR²S without
    its teacher) trains the remaining ones for proportionally more epochs: the total budget stays."""
    config = yaml.safe_load((REPO / "configs" / f"{method}_synthetic.yaml").read_text())
    model_config = method_classes(method)[0](**{**config.get("model_config", {}), **(overrides or {})})
    return len(getattr(model_config, "stages", ("main",)))


def effective_config(command: list[str]) -> dict:
    """What a ``train.py`` command trains: its parsed arguments as results.json's ``config`` records
    them, without the ones that only say where the run goes (``_PLACEMENT``)."""
    model_args, data_args, training_args = parse_training_arguments(command[2:])
    config = {"model": dataclasses.asdict(model_args), "data": dataclasses.asdict(data_args),
              "training": {k: v for k, v in dataclasses.asdict(training_args).items() if k not in _PLACEMENT}}
    return json.loads(json.dumps(config))


def cached_results(folder: Path, command: list[str]) -> dict | None:
    """The run's results.json contents when it exists AND was trained with what ``command`` asks for
    now (a config changed since, e.g. by the sweep, makes it stale: None)."""
    path = folder / "results.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    recorded = {**result["config"], "training": {k: v for k, v in result["config"]["training"].items() if k not in _PLACEMENT}}
    return result if json.loads(json.dumps(recorded)) == effective_config(command) else None


def run_one(runs: Path, method: str, seed: int, variant: str, overrides: dict, budget: float = 1.0,
            arguments: tuple[str, ...] = (), train_missing: bool = True) -> dict:
    """One training run (or its cached results, when trained with the same arguments); without
    ``train_missing`` a run that is not cached is a RuntimeError naming it."""
    name = run_name(method, seed, variant, budget)
    command = training_command(runs, method, seed, variant, overrides, budget, arguments)
    cached = cached_results(runs / name, command)
    if cached is not None:
        return cached
    if not train_missing:
        raise RuntimeError(f"{runs / name}: no run trained with the arguments asked for (nothing is trained now)")
    started = time.perf_counter()
    log = runs / f"{name}.log"
    with log.open("w") as stream:
        completed = subprocess.run(command, cwd=REPO, stdout=stream, stderr=subprocess.STDOUT,
                                   env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    if completed.returncode:
        raise RuntimeError(f"{name} failed (exit {completed.returncode}); see {log}")
    print(f"{name}: done in {time.perf_counter() - started:.0f} s", flush=True)
    return json.loads((runs / name / "results.json").read_text())


def setting_label(multiplier: float, weight: float) -> str:
    """The variant name of one sweep setting, e.g. ``head5_aux0.5``."""
    return f"head{multiplier:g}_aux{weight:g}"


def sweep_settings(method: str) -> list[tuple[str, float, float]]:
    """``(label, head multiplier, auxiliary weight)`` of each of the method's sweep settings, in grid
    order: both weights (the paper's, then half) at the first multiplier, then the paper's weight at
    each other multiplier."""
    paper, *others = sweep_weights(method)
    grid = [(HEAD_MULTIPLIERS[0], w) for w in (paper, *others)] + [(m, paper) for m in HEAD_MULTIPLIERS[1:]]
    return [(setting_label(m, w), m, w) for m, w in grid]


def setting_job(method: str, seed: int, variant: str, multiplier: float, weight: float, overrides: dict | None = None) -> tuple:
    """The job of one run at a sweep setting (``overrides``: more model_config on top, an ablation's)."""
    keys = sweep_keys(method)
    return (method, seed, variant, {**{key: weight for key in keys}, **(overrides or {})},
            ("--head_learning_rate_multiplier", f"{multiplier:g}"))


def sweep(runs: Path, methods, workers: int, budget: float = SWEEP_BUDGET, seed: int = SWEEP_SEED,
          train_missing: bool = True) -> dict:
    """Every method at each of its ``sweep_settings``: ``{"rows": {method: [setting rows]}, "chosen":
    {method: row}}``, a row being its multiplier, weight, run name and best VALIDATION R@1 / mAP.
    The choice is the highest validation R@1 (ties: the first setting in grid order)."""
    jobs = [setting_job(method, seed, label, multiplier, weight)
            for method in methods for label, multiplier, weight in sweep_settings(method)]
    outcomes = run_jobs(runs, jobs, [budget] * len(jobs), workers, train_missing)
    rows: dict[str, list[dict]] = {method: [] for method in methods}
    for (method, _, label, overrides, arguments), result in outcomes:
        best = result["best_validation"]["metrics"]
        rows[method].append({"setting": label, "head_learning_rate_multiplier": float(arguments[1]),
                             "weight": overrides[sweep_keys(method)[0]], "run": run_name(method, seed, label, budget),
                             "validation_R1": best["t2i/R1"], "validation_mAP": best["t2i/mAP"]})
    chosen = {method: max(method_rows, key=lambda row: row["validation_R1"]) for method, method_rows in rows.items()}
    return {"seed": seed, "budget": budget, "rows": rows, "chosen": chosen}


def write_choice(method: str, multiplier: float, weight: float, config_dir: Path = REPO / "configs") -> Path:
    """Sets the method's synthetic config to the chosen sweep setting: rewrites the value of its
    ``head_learning_rate_multiplier`` line and of each auxiliary-weight key under ``model_config``
    (adding the key's line when the config left it at its default), keeping every other line and
    comment; then checks the file parses to exactly those values."""
    path = config_dir / f"{method}_synthetic.yaml"
    text = path.read_text()
    text, count = re.subn(r"(?m)^head_learning_rate_multiplier:[^\n#]*", f"head_learning_rate_multiplier: {float(multiplier)!r}", text)
    if count != 1:
        raise ValueError(f"{path}: expected one top-level head_learning_rate_multiplier line, found {count}")
    for key in sweep_keys(method):
        text, count = re.subn(rf"(?m)^(  {key}:)[ \t]*[^\n#]*?([ \t]*(#.*)?)$", rf"\g<1> {float(weight)!r}\g<2>", text)
        if count == 0:
            text, count = re.subn(r"(?m)^model_config:\n", f"model_config:\n  {key}: {float(weight)!r}\n", text)
        if count != 1:
            raise ValueError(f"{path}: cannot set model_config.{key}")
    config = yaml.safe_load(text)
    if (config["head_learning_rate_multiplier"] != multiplier
            or any(config["model_config"][key] != weight for key in sweep_keys(method))):
        raise ValueError(f"{path}: rewriting the sweep's choice did not give multiplier {multiplier} and weight {weight}")
    path.write_text(text)
    return path


def chosen_setting(method: str) -> tuple[str, float, float]:
    """``(label, multiplier, weight)`` the method's synthetic config holds now."""
    config = yaml.safe_load((REPO / "configs" / f"{method}_synthetic.yaml").read_text())
    keys = sweep_keys(method)
    weights = {config["model_config"].get(key) for key in keys}
    if len(weights) != 1 or None in weights:
        raise ValueError(f"configs/{method}_synthetic.yaml: the sweep's keys {keys} must all be set to one value")
    multiplier, weight = config["head_learning_rate_multiplier"], weights.pop()
    return setting_label(multiplier, weight), multiplier, weight


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


def step_cost(method: str, costs: Path = TRAINING_COST) -> float:
    """The method's measured milliseconds per training step of the synthetic setup (its slowest
    stage; collation included) from ``bench_training``'s last results, 1.0 when none was recorded."""
    rows = json.loads(costs.read_text()) if costs.is_file() else []
    steps = [row["step_ms"] + row["collate_ms"] for row in rows if row["method"] == method and row["setup"] == "synthetic"]
    return max(steps, default=1.0)


def by_cost(jobs: list[tuple], budgets: list[float]) -> list[int]:
    """Indices of ``jobs`` (``(method, ...)``, run at ``budgets``), the most expensive first (the
    method's step cost x the job's budget): handing the longest runs out first keeps the workers from
    ending with one long run alone (LPT scheduling)."""
    costs = {method: step_cost(method) for method in {job[0] for job in jobs}}
    return sorted(range(len(jobs)), key=lambda index: -costs[jobs[index][0]] * budgets[index])


def run_jobs(runs: Path, jobs: list[tuple], budgets: list[float], workers: int,
             train_missing: bool = True) -> list[tuple[tuple, dict]]:
    """``(job, results)`` for each ``job = (method, seed, variant, model_config overrides, training
    argument overrides)`` trained at the matching fraction of ``budgets``, in the order of ``jobs``;
    run ``workers`` at a time, in ``by_cost`` order (``train_missing``: see ``run_one``)."""
    runs.mkdir(parents=True, exist_ok=True)
    order = by_cost(jobs, budgets)
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda index: run_one(runs, *jobs[index][:4], budget=budgets[index],
                                                      arguments=jobs[index][4], train_missing=train_missing), order))
    by_index = dict(zip(order, results))
    return [(job, by_index[index]) for index, job in enumerate(jobs)]


def comparison_jobs(methods, seeds) -> list[tuple]:
    """The jobs of ``compare``: every method at its configured setting, once per seed."""
    return [(method, seed, "", {}, ()) for method in methods for seed in seeds]


def ablation_jobs(methods, seed: int) -> list[tuple[str, tuple]]:
    """The jobs of ``ablate`` as ``(owner, job)``: per method, its chosen setting, then one job per row
    of its ``ablations``. A row naming another ``"method"`` trains that method's config at ITS chosen
    head multiplier with the row's overrides alone (no sweep weights: they are the owner's fields)."""
    jobs = []
    for method in methods:
        label, multiplier, weight = chosen_setting(method)
        jobs.append((method, setting_job(method, seed, label, multiplier, weight)))
        for variant, overrides in ablations(method).items():
            trained = overrides.get("method", method)
            if trained == method:
                jobs.append((method, setting_job(method, seed, variant, multiplier, weight, overrides)))
            else:
                other_multiplier = chosen_setting(trained)[1]
                rest = {key: value for key, value in overrides.items() if key != "method"}
                jobs.append((method, (trained, seed, f"{method} {variant}", rest,
                                      ("--head_learning_rate_multiplier", f"{other_multiplier:g}"))))
    return jobs


def compare(runs: Path, methods, seeds, workers: int) -> dict:
    """Every method at the full budget over ``seeds`` (``comparison_jobs``), trained, then summarised."""
    jobs = comparison_jobs(methods, seeds)
    return comparison_summary(runs, methods, seeds, run_jobs(runs, jobs, [1.0] * len(jobs), workers))


def comparison_summary(runs: Path, methods, seeds, outcomes: list[tuple[tuple, dict]]) -> dict:
    """``{"rows", "reranked", "differences", "results"}`` of the ``comparison_jobs`` runs' ``(job, results)``
    (``run_jobs``'s return), where ``results[method]`` lists the runs' results.json contents (with their
    validation histories)."""
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
    """Each method at its configured (chosen) setting and one run per component switched off
    (``ablation_jobs``), one seed, at ``budget``, trained, then summarised. The reference run has the
    sweep's name for that setting, so at the sweep's budget and seed it IS the sweep's chosen run
    (reused, not retrained)."""
    owned = ablation_jobs(methods, seed)
    jobs = [job for _, job in owned]
    return ablation_summary(runs, seed, budget, [owner for owner, _ in owned],
                            run_jobs(runs, jobs, [budget] * len(jobs), workers))


def ablation_label(owner: str, job: tuple) -> str:
    """The row label of an ablation job of ``owner``: the method's name for its chosen-setting run,
    ``"<owner>: <row>"`` for the others."""
    method, _, variant = job[:3]
    if method == owner and variant == chosen_setting(owner)[0]:
        return owner
    return f"{owner}: {variant.removeprefix(f'{owner} ') if method != owner else variant}"


def ablation_summary(runs: Path, seed: int, budget: float, owners: list[str], outcomes: list[tuple[tuple, dict]]) -> dict:
    """``{"rows", "differences", "against_baseline", "contributions"}`` of the ``ablation_jobs`` runs'
    ``(job, results)`` at ``seed`` and ``budget`` (``owners[i]``: the method whose row job ``i`` is): each
    ablated run against its full method (``differences``) and every run of a method other than the
    baseline against the baseline's chosen-setting run (``against_baseline``), on the same test queries
    at the same budget and seed; ``contributions[method]`` names the row that removes the paper's own
    contribution (its config class's ``zoo_contribution``)."""
    rows, differences, against_baseline = {}, {}, {}
    baseline_run = run_name(BASELINE, seed, chosen_setting(BASELINE)[0], budget)
    for owner, (job, result) in zip(owners, outcomes):
        label = ablation_label(owner, job)
        rows[label] = summarise([result])
        if "test_reranked" in result:
            rows[f"{label} (re-ranked)"] = summarise([result], "test_reranked")
        run = run_name(job[0], seed, job[2], budget)
        if label != owner:  # against the full method at the same budget and seed
            differences[label] = paired_differences(runs, [run], [run_name(owner, seed, chosen_setting(owner)[0], budget)])
        if owner != BASELINE:
            against_baseline[label] = paired_differences(runs, [run], [baseline_run])
    contributions = {owner: f"{owner}: {method_classes(owner)[0].zoo_contribution}" for owner in dict.fromkeys(owners)
                     if method_classes(owner)[0].zoo_contribution}
    return {"seeds": [seed], "budget": budget, "rows": rows, "differences": differences,
            "against_baseline": against_baseline, "contributions": contributions}


def sweep_table(result: dict) -> str:
    """Markdown: one row per method, one column per setting (validation R@1 / mAP), the choice in bold."""
    methods = list(result["rows"])
    lines = ["| method | auxiliary weight keys | " + " | ".join(
                 f"setting {i + 1}" for i in range(max(len(rows) for rows in result["rows"].values()))) + " | chosen |",
             "|---|---|" + "---|" * (max(len(rows) for rows in result["rows"].values()) + 1)]
    for method in methods:
        chosen = result["chosen"][method]
        cells = [(f"**{c}**" if row == chosen else c) for row in result["rows"][method]
                 for c in [f"head x{row['head_learning_rate_multiplier']:g}, weight {row['weight']:g}: "
                           f"{row['validation_R1']:.2f} / {row['validation_mAP']:.2f}"]]
        lines.append(f"| {method} | {', '.join(f'`{key}`' for key in sweep_keys(method))} | " + " | ".join(cells)
                     + f" | head x{chosen['head_learning_rate_multiplier']:g}, weight {chosen['weight']:g} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--sweep", action="store_true",
                        help="the validation-only tuning sweep (seed 0, --budget default 0.5); writes the choice into the configs")
    parser.add_argument("--ablations", action="store_true", help="run each method's ablation rows (first seed)")
    parser.add_argument("--budget", type=float, default=None, help="fraction of each config's epochs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=REPO / "benchmarks" / "runs")
    parser.add_argument("--summary", type=Path, default=None,
                        help="JSON written (default benchmarks/zoo_sweep.json, zoo_ablations.json or zoo_summary.json)")
    args = parser.parse_args()
    mode = "sweep" if args.sweep else "ablations" if args.ablations else "summary"
    args.summary = args.summary or REPO / "benchmarks" / f"zoo_{mode}.json"
    if args.sweep:
        summary = sweep(args.runs, args.methods, args.workers, args.budget or SWEEP_BUDGET)
        for method, row in summary["chosen"].items():
            write_choice(method, row["head_learning_rate_multiplier"], row["weight"])
        print(sweep_table(summary))
    elif args.ablations:
        summary = ablate(args.runs, args.methods, args.seeds[0], args.budget or SWEEP_BUDGET, args.workers)
        print(table(summary["rows"], differences=summary["differences"], against="the full method"))
    else:
        if args.budget not in (None, 1.0):
            parser.error("--budget applies to --sweep and --ablations; the comparison runs the full budget")
        summary = compare(args.runs, args.methods, args.seeds, args.workers)
        summary.pop("results")
        print(table({**summary["rows"], **summary["reranked"]}, differences=summary["differences"]))
    args.summary.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
