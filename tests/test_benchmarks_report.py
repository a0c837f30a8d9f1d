"""The zoo report's pieces (benchmarks/report.py, benchmarks/zoo.py): budgets, curves, tables, blocks."""

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import report  # noqa: E402
import report_text  # noqa: E402
import zoo  # noqa: E402


def run_result(stages: int, epochs: int, validations: list[tuple[int, int, float]], last_step: int) -> dict:
    """A results.json with the given (stage, step, R1) validations and a last training log at last_step."""
    history = [{"kind": "validation", "stage": stage, "epoch": 0, "step": step, "metrics": {"t2i/R1": r1}}
               for stage, step, r1 in validations]
    history.append({"kind": "train", "stage": stages - 1, "epoch": 0, "step": last_step})
    return {"history": history, "config": {"training": {"num_train_epochs": epochs}}}


def test_budget_arguments_scale_every_epoch_count_of_the_config():
    assert zoo.budget_arguments("lgur", 1.0) == []
    config = yaml.safe_load((REPO / "configs" / "lgur_synthetic.yaml").read_text())
    assert (config["num_train_epochs"], config["warmup_epochs"], config["eval_epochs"]) == (3, 0.5, 1)
    assert zoo.budget_arguments("lgur", 0.5) == ["--num_train_epochs", "1.5", "--warmup_epochs", "0.25", "--eval_epochs", "0.5"]
    step_decay = {"num_train_epochs": 30, "warmup_epochs": 2, "lr_milestones_epochs": [10, 20, 25]}
    assert zoo.scaled_epoch_arguments(step_decay, 0.5) == ["--num_train_epochs", "15", "--warmup_epochs", "1", "--eval_epochs",
                                                           "0.5", "--lr_milestones_epochs", "5", "10", "12.5"]


def test_summaries_average_over_seeds_and_tables_show_the_spread_only_for_several_runs():
    results = [{"test": {f"t2i/{key}": value for key in zoo.KEYS}, "train_runtime_seconds": 60 * minutes}
               for value, minutes in ((10.0, 1.0), (14.0, 3.0))]
    summary = zoo.summarise(results)
    assert summary["R1"] == (12.0, pytest.approx(2 ** 0.5 * 2))  # sample std of 10 and 14: sqrt(8)
    assert summary["train_minutes"] == 2.0 and summary["runs"] == 2
    single = zoo.summarise(results[:1])
    table = zoo.table({"a": summary, "b": single}).splitlines()
    assert table[2] == "| a | " + " | ".join(["12.00 ± 2.83"] * 5) + " | 2.0 |"
    assert table[3] == "| b | " + " | ".join(["10.00"] * 5) + " | 1.0 |"


def test_validation_curve_places_evaluations_on_the_whole_budget():
    single = run_result(1, 30, [(0, 52, 5.0), (0, 1560, 20.0)], last_step=1560)
    assert report.validation_curve(single) == ([1.0, 30.0], [5.0, 20.0])
    # two stages of 15 epochs end to end: stage 1's evaluations lie after stage 0's
    two_stage = run_result(2, 15, [(0, 765, 6.0), (1, 816, 14.0), (1, 1530, 23.5)], last_step=1530)
    assert report.validation_curve(two_stage) == ([15.0, 16.0, 30.0], [6.0, 14.0, 23.5])


def _history(method, r1s, kind="comparison", seed=0):
    return {"kind": kind, "method": method, "seed": seed,
            "validation": [{"stage": 0, "step": 10 * (i + 1), "epoch": float(i + 1), "R1": r1, "mAP": r1} for i, r1 in enumerate(r1s)]}


def test_validation_curves_figure_is_written_from_the_histories(tmp_path):
    histories = {"a-seed0": _history("a", [1.0, 3.0]), "a-seed1": _history("a", [2.0, 5.0], seed=1),
                 "b-seed0": _history("b", [4.0, 4.0]), "b-ablated": _history("b", [9.0, 9.0], kind="ablation")}
    report.plot_validation_curves(histories, tmp_path / "curves.png")
    assert Image.open(tmp_path / "curves.png").size == (960, 540)  # 8 x 4.5 inches at 120 dpi


def test_run_history_keeps_the_curve_best_step_head_metrics_and_rerank_decision():
    result = run_result(2, 15, [(0, 765, 6.0), (1, 816, 14.0), (1, 1530, 12.0)], last_step=1530)
    for entry in result["history"]:
        entry.setdefault("metrics", {})["t2i/mAP"] = 1.0
    best = {"stage": 1, "step": 816, "metrics": {"t2i/R1": 14.0, "t2i/mAP": 1.0, "itm/accuracy": 0.75}}
    result.update(best_validation=best, train_runtime_seconds=90.0, rerank_skipped="no gain",
                  validation_reranked={"t2i/R1": 13.0}, backbone_gradient_norms=[{"stage": "teacher", "step": 1}])
    history = report.run_history("ablation", "lcr2s", "lcr2s: no support set", 0, 0.5, result)
    assert [point["epoch"] for point in history["validation"]] == [15.0, 16.0, 30.0]
    assert history["best"] == {"stage": 1, "step": 816, "R1": 14.0} and history["best_is_last"] is False
    assert history["head_metrics"] == {"itm/accuracy": 0.75} and history["train_minutes"] == 1.5
    assert history["rerank"] == {"used": False, "skipped_because": "no gain", "validation_reranked_R1": 13.0}
    assert history["backbone_gradient_norms"] == [{"stage": "teacher", "step": 1}]


def test_attribution_reads_the_lead_the_none_row_and_the_contribution_from_the_json():
    comparison = {"differences": {"uit": {"R1": "+3.00 [+1.50, +4.50]"}}}
    ablations = {"contributions": {"uit": "uit: no restoration (TIR)"},
                 "against_baseline": {"uit: none of its additions": {"R1": "+0.40 [-1.10, +1.90]"},
                                      "cada: none of its additions": {"R1": "+9.00 [+8.00, +10.00]"}},
                 "differences": {
        "uit: none of its additions": {"R1": "-3.20 [-5.00, -1.40]"},
        "uit: no restoration (TIR)": {"R1": "-0.40 [-1.90, +1.10]"},
        "uit: no triplet": {"R1": "-4.10 [-6.00, -2.20]"},
        "cada: no ARA": {"R1": "-9.00 [-10.00, -8.00]"}}}
    text = report_text.attribution("uit", comparison, ablations)
    assert text.startswith("**uit**: ΔR@1 over the baseline +3.00 [+1.50, +4.50] (full budget).")
    assert ("Without any of its additions (the baseline's training on its embedding) it sits on the baseline within "
            "its interval: +0.40 [-1.10, +1.90] against the baseline's run at the same budget.") in text
    assert "Against the full method that row is -3.20 [-5.00, -1.40], below the full method" in text
    assert "(row `no restoration (TIR)`): -0.40 [-1.90, +1.10] without it — it shows no effect here (the interval covers 0)." in text
    assert text.endswith("The row that costs the most: `no triplet` -4.10 [-6.00, -2.20].")  # not another method's row
    ablations["differences"]["uit: no restoration (TIR)"]["R1"] = "-2.00 [-3.00, -1.00]"
    assert "it carries 2.00 points of R@1." in report_text.attribution("uit", comparison, ablations)


def test_replace_block_rewrites_only_between_the_markers(tmp_path):
    markers = ("<!-- begin -->", "<!-- end -->")
    path = tmp_path / "doc.md"
    path.write_text("intro\n<!-- begin -->\nold\ntable\n<!-- end -->\noutro\n")
    report_text.replace_block(path, markers, "new | table")
    assert path.read_text() == "intro\n<!-- begin -->\nnew | table\n<!-- end -->\noutro\n"
    report_text.replace_block(path, markers, "again")  # idempotent shape: the markers stay
    assert path.read_text() == "intro\n<!-- begin -->\nagain\n<!-- end -->\noutro\n"
    for broken in ("no markers\n", "<!-- begin -->\na\n<!-- end -->\n<!-- begin -->\nb\n<!-- end -->\n"):
        path.write_text(broken)
        with pytest.raises(ValueError, match="doc.md: expected the markers"):
            report_text.replace_block(path, markers, "x")
        assert path.read_text() == broken


def test_the_readme_and_results_carry_the_report_markers():
    for document, key in ((REPO / "README.md", "readme"), (REPO / "benchmarks" / "RESULTS.md", "results")):
        text = document.read_text()
        assert all(text.count(marker) == 1 for marker in report_text.MARKERS[key]), document


def test_readme_table_puts_the_papers_figures_and_each_gpu_config_beside_ours():
    row = {key: (20.0, 1.0) for key in zoo.KEYS} | {"train_minutes": 1.0, "runs": 3}
    comparison = {"rows": {method: dict(row) for method in zoo.METHODS}, "reranked": {"cada (re-ranked)": dict(row)},
                  "differences": {"uit": {"R1": "+10.00 [+8.00, +12.00]", "mAP": "+5.00 [+4.00, +6.00]"}}}
    comparison["rows"]["uit"]["R1"], comparison["rows"]["uit"]["mAP"] = (30.0, 2.0), (25.0, 1.5)
    lines = report_text.readme_table(comparison).splitlines()
    assert len(lines) == 2 + len(zoo.METHODS)
    uit = next(line for line in lines if line.startswith("| `uit`"))
    assert "| **30.00 ± 2.00** | **25.00 ± 1.50** | +10.00 [+8.00, +12.00] |" in uit  # the best in bold
    assert "| SEN version, ViT-B/16 | 75.00 / 67.23 · [yaml](configs/uit_cuhk-pedes.yaml) |" in uit  # UITConfig.zoo_reported
    assert "| `lgur` | 20.00 ± 1.00 | 20.00 ± 1.00 | — |" in lines[-2]
    assert lines[0].startswith("| method | synthetic R1 (here) | synthetic mAP (here) | ΔR1 vs clip_reid [95% CI] |")
    assert "(re-ranked 20.00)" in next(line for line in lines if line.startswith("| `cada`"))
    for method in zoo.METHODS:
        for dataset in report_text.DATASETS:
            assert f"(configs/{method}_{dataset}.yaml)" in report_text.readme_table(comparison)
            assert (REPO / "configs" / f"{method}_{dataset}.yaml").is_file()


def _write_per_query(runs, name, r1, ap, pids):
    (runs / name).mkdir(parents=True)
    (runs / name / zoo.PER_QUERY_FILE).write_text(json.dumps({"t2i": {"R1": r1, "AP": ap, "pid": pids}}))


def test_differences_pair_runs_seed_by_seed_on_the_same_queries(tmp_path):
    pids = [0, 0, 1, 1, 2, 2]
    for seed in (0, 1):  # the method wins exactly one query per seed more than the baseline; AP +0.1 everywhere
        base_r1 = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
        _write_per_query(tmp_path, zoo.run_name("clip_reid", seed), base_r1, [0.5] * 6, pids)
        _write_per_query(tmp_path, zoo.run_name("uit", seed), [1.0 if i == seed else v for i, v in enumerate(base_r1)],
                         [0.6] * 6, pids)
    runs = [zoo.run_name("uit", seed) for seed in (0, 1)]
    references = [zoo.run_name("clip_reid", seed) for seed in (0, 1)]
    differences = zoo.paired_differences(tmp_path, runs, references)
    assert differences["mAP"] == "+10.00 [+10.00, +10.00]"
    assert differences["R1"].startswith("+16.67 [")  # 1 of 6 queries per seed
    assert zoo.paired_differences(tmp_path, runs, [zoo.run_name("lgur", 0), zoo.run_name("lgur", 1)]) == {}
    _write_per_query(tmp_path, zoo.run_name("lgur", 0), [0.0] * 5, [0.5] * 5, pids[:5])
    with pytest.raises(ValueError, match="same test queries"):
        zoo.paired_differences(tmp_path, [zoo.run_name("lgur", 0)], references[:1])


def test_table_shows_the_difference_columns_only_when_there_are_differences():
    summary = {**{key: (10.0, 0.0) for key in zoo.KEYS}, "train_minutes": 1.0, "runs": 1}
    plain = zoo.table({"a": summary})
    assert "Δ" not in plain
    lines = zoo.table({"a": summary, "b": summary}, differences={"b": {"R1": "+1.00 [+0.50, +1.50]"}}).splitlines()
    assert lines[0].endswith("ΔR1 vs the baseline [95% CI] | ΔmAP vs the baseline [95% CI] | train min |")
    assert lines[2] == "| a | " + " | ".join(["10.00"] * 5) + " | — | — | 1.0 |"
    assert lines[3] == "| b | " + " | ".join(["10.00"] * 5) + " | +1.00 [+0.50, +1.50] | — | 1.0 |"


def _copy_configs(tmp_path):
    for method in zoo.METHODS:
        (tmp_path / f"{method}_synthetic.yaml").write_text((REPO / "configs" / f"{method}_synthetic.yaml").read_text())


@pytest.mark.parametrize("method", zoo.METHODS)
def test_write_choice_sets_the_two_knobs_and_keeps_every_other_line(tmp_path, method):
    _copy_configs(tmp_path)
    path = tmp_path / f"{method}_synthetic.yaml"
    before = path.read_text()
    keys, weights = zoo.sweep_keys(method), zoo.sweep_weights(method)
    _, multiplier_now, weight_now = zoo.chosen_setting(method)  # write the other setting: every knob changes
    multiplier = next(m for m in zoo.HEAD_MULTIPLIERS if m != multiplier_now)
    weight = next(w for w in weights if w != weight_now)
    zoo.write_choice(method, multiplier, weight, tmp_path)
    after = yaml.safe_load(path.read_text())
    assert after["head_learning_rate_multiplier"] == multiplier
    assert all(after["model_config"][key] == weight for key in keys)
    expected = yaml.safe_load(before)  # nothing else changed, comments included
    expected["head_learning_rate_multiplier"] = multiplier
    expected["model_config"].update({key: weight for key in keys})
    assert after == expected
    changed = [line for line in path.read_text().splitlines() if line not in before.splitlines()]
    assert len(changed) == 1 + len(keys), changed
    assert sum(line.startswith("#") for line in path.read_text().splitlines()) == sum(
        line.startswith("#") for line in before.splitlines())


def test_write_choice_adds_a_key_the_config_left_at_its_default_and_names_a_broken_file(tmp_path):
    _copy_configs(tmp_path)
    path = tmp_path / "uit_synthetic.yaml"
    path.write_text(path.read_text().replace("  tir_loss_weight: 10.0\n", ""))
    zoo.write_choice("uit", 5.0, 5.0, tmp_path)
    assert yaml.safe_load(path.read_text())["model_config"]["tir_loss_weight"] == 5.0
    path.write_text(path.read_text().replace("head_learning_rate_multiplier", "head_multiplier"))
    with pytest.raises(ValueError, match="uit_synthetic.yaml: expected one top-level head_learning_rate_multiplier"):
        zoo.write_choice("uit", 1.0, 5.0, tmp_path)


def test_a_cached_run_is_reused_only_when_it_was_trained_with_the_arguments_asked_for(tmp_path):
    job = zoo.setting_job("clip_reid", 0, "head5_aux1", 5.0, 1.0)
    command = zoo.training_command(tmp_path, *job[:4], 0.5, job[4])
    folder = tmp_path / zoo.run_name("clip_reid", 0, "head5_aux1", 0.5)
    assert zoo.cached_results(folder, command) is None  # nothing trained yet
    folder.mkdir()
    recorded = zoo.effective_config(command)
    recorded["training"]["output_dir"] = str(folder)  # placement is not compared
    (folder / "results.json").write_text(json.dumps({"config": recorded, "test": {}}))
    assert zoo.cached_results(folder, command) == {"config": recorded, "test": {}}
    other_weight = zoo.training_command(tmp_path, "clip_reid", 0, "head5_aux1", {"id_loss_weight": 0.5}, 0.5, job[4])
    other_multiplier = zoo.training_command(tmp_path, *job[:4], 0.5, ("--head_learning_rate_multiplier", "1"))
    other_budget = zoo.training_command(tmp_path, *job[:4], 1.0, job[4])
    assert [zoo.cached_results(folder, c) for c in (other_weight, other_multiplier, other_budget)] == [None] * 3


def test_the_sweep_chooses_on_validation_r1_alone(tmp_path, monkeypatch):
    # validation R1 per (multiplier, weight); the TEST R1 of each run says the opposite and must not matter
    validation = {(1.0, 1.0): 10.0, (1.0, 0.5): 14.0, (5.0, 1.0): 14.0}

    def fake_run_jobs(runs, jobs, budgets, workers, train_missing=True):
        assert budgets == [zoo.SWEEP_BUDGET] * len(jobs) and all(job[1] == zoo.SWEEP_SEED for job in jobs)
        outcomes = []
        for job in jobs:
            method, _, label, overrides, arguments = job
            key = (float(arguments[1]), overrides[zoo.sweep_keys(method)[0]] / zoo.sweep_weights(method)[0])
            r1 = validation[key]
            outcomes.append((job, {"best_validation": {"metrics": {"t2i/R1": r1, "t2i/mAP": r1 / 2}},
                                   "test": {"t2i/R1": 100 - r1}}))
        return outcomes

    monkeypatch.setattr(zoo, "run_jobs", fake_run_jobs)
    result = zoo.sweep(tmp_path, ["clip_reid", "uit"], workers=2)
    # the same 3 settings for every method: the paper's weight at x1 and x5, half of it at x1
    assert [row["setting"] for row in result["rows"]["uit"]] == ["head1_aux10", "head1_aux5", "head5_aux10"]
    assert [row["setting"] for row in result["rows"]["clip_reid"]] == ["head1_aux1", "head1_aux0.5", "head5_aux1"]
    assert result["chosen"]["uit"]["setting"] == "head1_aux5"  # the tie goes to the first in grid order
    assert result["chosen"]["clip_reid"] == {"setting": "head1_aux0.5", "head_learning_rate_multiplier": 1.0, "weight": 0.5,
                                             "run": "clip_reid-seed0-budget0.5-head1_aux0.5", "validation_R1": 14.0,
                                             "validation_mAP": 7.0}
    table = zoo.sweep_table(result).splitlines()
    assert table[2].startswith("| clip_reid | `id_loss_weight` | head x1, weight 1: 10.00 / 5.00 |")
    assert "| **head x1, weight 0.5: 14.00 / 7.00** | head x5, weight 1: 14.00 / 7.00 | head x1, weight 0.5 |" in table[2]


def test_jobs_run_most_expensive_method_first_and_come_back_in_job_order(tmp_path, monkeypatch):
    costs = tmp_path / "training_cost.json"  # bench_training's rows: cada's slowest, lcr2s's student stage counts
    costs.write_text(json.dumps([
        {"method": "clip_reid", "setup": "synthetic", "stage": "main", "step_ms": 40.0, "collate_ms": 20.0},
        {"method": "clip_reid", "setup": "vit-b16", "stage": "main", "step_ms": 9000.0, "collate_ms": 20.0},
        {"method": "lcr2s", "setup": "synthetic", "stage": "teacher", "step_ms": 40.0, "collate_ms": 20.0},
        {"method": "lcr2s", "setup": "synthetic", "stage": "student", "step_ms": 60.0, "collate_ms": 20.0},
        {"method": "cada", "setup": "synthetic", "stage": "main", "step_ms": 140.0, "collate_ms": 30.0}]))
    monkeypatch.setattr(zoo, "TRAINING_COST", costs)
    monkeypatch.setattr(zoo.step_cost, "__defaults__", (costs,))
    started = []

    def fake_run_one(runs, method, seed, variant, overrides, budget, arguments, train_missing=True):
        started.append((method, seed))
        return {"method": method, "seed": seed, "budget": budget}

    monkeypatch.setattr(zoo, "run_one", fake_run_one)
    jobs = [(method, seed, "", {}, ()) for method in ("clip_reid", "lcr2s", "cada", "uit") for seed in (0, 1)]
    jobs.append(("cada", 2, "", {}, ()))  # at a quarter of the budget: 170 ms x 0.25 costs less than clip_reid's 60 ms
    outcomes = zoo.run_jobs(tmp_path, jobs, [1.0] * 8 + [0.25], workers=1)
    assert started == [("cada", 0), ("cada", 1), ("lcr2s", 0), ("lcr2s", 1), ("clip_reid", 0), ("clip_reid", 1),
                       ("cada", 2), ("uit", 0), ("uit", 1)]
    assert [job for job, _ in outcomes] == jobs  # uit has no recorded cost: 1 ms, last
    assert [result for _, result in outcomes] == [{"method": job[0], "seed": job[1], "budget": 0.25 if job[1] == 2 else 1.0}
                                                  for job in jobs]


@pytest.mark.parametrize("method", zoo.METHODS)
def test_each_config_holds_a_setting_of_the_sweep_grid_the_recorded_sweep_chose(method):
    label, multiplier, weight = zoo.chosen_setting(method)
    assert (label, multiplier, weight) in zoo.sweep_settings(method)
    recorded = json.loads((REPO / "benchmarks" / "zoo_sweep.json").read_text())  # written with the configs
    assert recorded["chosen"][method]["setting"] == label


def test_results_block_reports_the_protocol_the_sweep_the_comparison_and_the_ablations(tmp_path):
    row = {key: (20.0, 1.0) for key in zoo.KEYS} | {"train_minutes": 3.0, "runs": 3}
    sweep = {"seed": 0, "budget": 0.5, "rows": {}, "chosen": {}}
    for method in zoo.METHODS:
        sweep["rows"][method] = [{"setting": label, "head_learning_rate_multiplier": m, "weight": w, "run": label,
                                  "validation_R1": 10.0 + i, "validation_mAP": 5.0} for i, (label, m, w) in
                                 enumerate(zoo.sweep_settings(method))]
        sweep["chosen"][method] = sweep["rows"][method][-1]
    comparison = {"seeds": [0, 1, 2], "rows": {method: dict(row) for method in zoo.METHODS}, "reranked": {},
                  "differences": {"uit": {"R1": "+1.50 [+0.20, +2.80]", "mAP": "+0.50 [-0.10, +1.10]"}},
                  "compute_matched": {"seed": 0, "budget": 0.5, "rows": {"uit": {"ratio": 1.5, "budget": 0.75, "train_minutes": 4.5,
                                                                  "same_epochs": {"R1": "+1.00 [+0.10, +1.90]"},
                                                                  "same_minutes": {"R1": "+0.20 [-0.70, +1.10]"}}}},
                  "protocol_k": {"old_k": 2, "new_k": 4, "old_validation_R1": 40.0, "new_validation_R1": 41.5,
                                 "old_validation_mAP": 42.0, "new_validation_mAP": 43.25, "test_difference": {"R1": "+0.50 [-1.00, +2.00]"}}}
    ablations = {"seeds": [0], "budget": 0.5, "rows": {"uit": {**row, "runs": 1}, "uit: no triplet": {**row, "runs": 1}},
                 "differences": {"uit: no triplet": {"R1": "-2.00 [-3.00, -1.00]", "mAP": "-1.00 [-2.00, +0.00]"}},
                 "contributions": {"uit": "uit: no restoration (TIR)"}}
    training = json.loads((REPO / "benchmarks" / "training_cost.json").read_text())
    inference = json.loads((REPO / "benchmarks" / "inference_cost.json").read_text())
    meta = {"date": "2026-12-06", "machine": "x86_64", "cpu_count": 2, "torch": "2.13.0+cpu", "threads": 2,
            "phases": {"sweep (validation only)": 600.0, "total": 4800.0}, "trained_now": 12, "total_runs": 50, "workers": 2}
    histories = {"uit-seed0": {**_history("uit", [1.0, 2.0]), "best_is_last": True, "backbone_gradient_norms": [
                     {"stage": "main", "step": 1, "terms": {"sdm": 12.5, "tir": 0.0}, "total": 12.5}]},
                 "uit-seed0-budget0.5-no_triplet": {**_history("uit", [2.0, 1.0], kind="ablation"), "best_is_last": False}}
    block = report_text.results_block(meta, sweep, comparison, ablations, training, inference, histories)
    config = yaml.safe_load((REPO / "configs" / "clip_reid_synthetic.yaml").read_text())
    assert f"the same {config['num_train_epochs']:g}-epoch budget" in block
    assert f"({config['dataset_options']['num_train_ids']:,} training identities" in block
    assert "sweep (validation only) 10.0, total 80.0" in block and "12 of the\n50 training runs" in block
    assert "| uit | `tir_loss_weight` | head x1, weight 10: 10.00 / 5.00 |" in block
    assert "| **head x5, weight 10: 12.00 / 5.00** | head x5, weight 10 |" in block
    assert "| uit | " + " | ".join(["20.00 ± 1.00"] * 5) + " | +1.50 [+0.20, +2.80] | +0.50 [-0.10, +1.10] | 3.0 |" in block
    assert "| uit: no triplet | " + " | ".join(["20.00"] * 5) + " | -2.00 [-3.00, -1.00] | -1.00 [-2.00, +0.00] | 3.0 |" in block
    assert "(seed 0, 0.5 of the budget)" in block and "at 50% of its epochs" in block
    assert "No re-ranked row: training refused to re-rank" in block and "re-ranked row re-scores" not in block
    assert "1 of the 2 comparison and ablation runs had their best validation R@1 at their last evaluation" in block
    assert "| uit | 1.50 | 0.75 x the epochs | 4.5 | +1.00 [+0.10, +1.90] | +0.20 [-0.70, +1.10] |" in block
    assert "The baseline trained (seed 0) for the sweep's budget (0.5 of the epochs) times each" in block
    assert "From the comparison (full budget, 3 seeds)" in block
    assert "| uit | main | 1 | sdm 12.5, tir 0 | 12.5 |" in block
    assert "best validation R@1 40.00 -> 41.50, validation mAP 42.00 -> 43.25" in block
    assert "**uit**: ΔR@1 over the baseline +1.50 [+0.20, +2.80] (full budget)." in block


def test_the_rerank_note_describes_the_reranked_row_only_when_there_is_one():
    row = {key: (20.0, 1.0) for key in zoo.KEYS}
    with_row = report_text.rerank_note({"reranked": {"cada (re-ranked)": row}}, rerank_k=16)
    assert with_row == "CADA's re-ranked row re-scores each query's top 16 (its config's `rerank_k`) with its matching head."
    assert report_text.rerank_note({"reranked": {}}, rerank_k=16).startswith("No re-ranked row: ")


@pytest.mark.parametrize("method", ["clip_reid", "cada"])
def test_the_training_cost_of_the_synthetic_setup_is_measured_on_the_model_train_py_trains(method):
    import bench_training
    from transformers import CLIPModel

    from tireid_hf.training.loop import build_model  # what train.py calls
    from tireid_hf.training.arguments import parse_training_arguments

    model = bench_training.build_model(method, "synthetic", num_ids=1000)
    model_args, _, _ = parse_training_arguments(["--config", str(REPO / "configs" / f"{method}_synthetic.yaml"),
                                                 "--output_dir", "unused"])
    trained = build_model(model_args, num_ids=1000)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in trained.parameters())
    base = CLIPModel.from_pretrained(REPO / "bases" / "clip-synthetic")  # its weights, not a random default-size CLIP
    torch.testing.assert_close(model.clip.text_model.embeddings.token_embedding.weight,
                               base.text_model.embeddings.token_embedding.weight)


def test_a_row_that_drops_a_stage_trains_the_others_longer_so_the_total_budget_stays(tmp_path):
    full = zoo.training_command(tmp_path, "lcr2s", 0, "", {}, 0.5)
    alone = zoo.training_command(tmp_path, "lcr2s", 0, "alone", {"use_teacher": False}, 0.5)
    epochs = yaml.safe_load((REPO / "configs" / "lcr2s_synthetic.yaml").read_text())["num_train_epochs"]
    assert full[full.index("--num_train_epochs") + 1] == f"{epochs * 0.5:.4g}"  # per stage, two stages
    assert alone[alone.index("--num_train_epochs") + 1] == f"{epochs * 0.5 * 2:.4g}"  # one stage, the same total
    assert alone[alone.index("--eval_epochs") + 1] == full[full.index("--eval_epochs") + 1]  # the same cadence
    assert zoo.training_command(tmp_path, "cada", 0, "", {"ara_loss_weight": 0.0}, 1.0)[-2:] == [
        "--model_config", '{"ara_loss_weight": 0.0}']  # one stage either way: nothing scaled at the full budget


def test_ablation_jobs_label_rows_by_their_owner_and_train_a_named_other_method(monkeypatch):
    from tireid_hf.modeling import UITConfig
    monkeypatch.setattr(UITConfig, "zoo_ablations", {"no triplet": {"triplet_loss_weight": 0.0},
                                                     "its losses on CLIP": {"method": "clip_reid", "id_loss_weight": 0.0}})
    owned = zoo.ablation_jobs(["uit"], 0)
    label, multiplier, weight = zoo.chosen_setting("uit")
    assert [owner for owner, _ in owned] == ["uit"] * 3
    assert owned[1][1] == ("uit", 0, "no triplet", {**{key: weight for key in zoo.sweep_keys("uit")}, "triplet_loss_weight": 0.0},
                           ("--head_learning_rate_multiplier", f"{multiplier:g}"))
    assert owned[2][1] == ("clip_reid", 0, "uit its losses on CLIP", {"id_loss_weight": 0.0},
                           ("--head_learning_rate_multiplier", f"{zoo.chosen_setting('clip_reid')[1]:g}"))
    assert [zoo.ablation_label("uit", job) for _, job in owned] == ["uit", "uit: no triplet", "uit: its losses on CLIP"]
    assert zoo.run_name(*owned[2][1][:3], 0.5) == "clip_reid-seed0-budget0.5-uit_its_losses_on_CLIP"


def test_ablation_summary_sets_each_row_against_its_full_method_and_against_the_baseline(tmp_path):
    pids = [0, 0, 1, 1]
    base, full, none = zoo.chosen_setting("clip_reid")[0], zoo.chosen_setting("uit")[0], "none of its additions"
    _write_per_query(tmp_path, zoo.run_name("clip_reid", 0, base, 0.5), [0.0, 0.0, 1.0, 1.0], [0.5] * 4, pids)
    _write_per_query(tmp_path, zoo.run_name("uit", 0, full, 0.5), [1.0, 1.0, 1.0, 1.0], [0.75] * 4, pids)
    _write_per_query(tmp_path, zoo.run_name("uit", 0, none, 0.5), [0.0, 0.0, 1.0, 1.0], [0.5] * 4, pids)
    result = {"test": {f"t2i/{key}": 1.0 for key in zoo.KEYS}, "train_runtime_seconds": 60.0}
    owners = ["clip_reid", "uit", "uit"]
    outcomes = [(("clip_reid", 0, base, {}, ()), result), (("uit", 0, full, {}, ()), result), (("uit", 0, none, {}, ()), result)]
    summary = zoo.ablation_summary(tmp_path, 0, 0.5, owners, outcomes)
    assert summary["differences"] == {"uit: none of its additions": {"R1": "-50.00 [-100.00, +0.00]", "mAP": "-25.00 [-25.00, -25.00]"}}
    assert summary["against_baseline"] == {"uit": {"R1": "+50.00 [+0.00, +100.00]", "mAP": "+25.00 [+25.00, +25.00]"},
                                           "uit: none of its additions": {"R1": "+0.00 [+0.00, +0.00]", "mAP": "+0.00 [+0.00, +0.00]"}}
    assert summary["contributions"] == {"uit": "uit: no restoration (TIR)"}


def test_a_run_that_is_not_cached_is_refused_when_nothing_may_be_trained(tmp_path):
    with pytest.raises(RuntimeError, match="clip_reid-seed0-budget0.5-x: no run trained with the arguments asked for"):
        zoo.run_one(tmp_path, "clip_reid", 0, "x", {}, 0.5, train_missing=False)


def test_matched_jobs_train_the_baseline_at_the_sweep_budget_times_each_method_s_minutes_over_its_own(tmp_path):
    """Ratios from the chosen sweep runs' minutes: 2.5 -> the baseline at 0.5 x 2.5 = 1.25 of the epochs;
    a method within 10 % of the baseline (1.05) gets no run."""
    minutes = {zoo.BASELINE: 100.0, "cada": 250.0, "uit": 105.0}
    sweep = {"chosen": {method: {"run": f"{method}-sweep"} for method in minutes}}
    for method, seconds in minutes.items():
        (tmp_path / f"{method}-sweep").mkdir()
        (tmp_path / f"{method}-sweep" / "results.json").write_text(json.dumps({"train_runtime_seconds": seconds}))
    jobs = report.matched_jobs(tmp_path, sweep, list(minutes))
    assert jobs == [((zoo.BASELINE, zoo.SWEEP_SEED, "minutes of cada", {}, ()), 1.25, 2.5)]
