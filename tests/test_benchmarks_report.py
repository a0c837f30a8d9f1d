"""The zoo report's pieces (benchmarks/report.py, benchmarks/zoo.py): budgets, curves, tables, blocks."""

import json
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import report  # noqa: E402
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
    assert (config["num_train_epochs"], config["warmup_epochs"], config["eval_epochs"]) == (10, 1, 2)
    assert zoo.budget_arguments("lgur", 0.5) == ["--num_train_epochs", "5", "--warmup_epochs", "0.5", "--eval_epochs", "1"]
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


def test_validation_curves_figure_is_written(tmp_path):
    runs = {"a": [run_result(1, 30, [(0, 10, 1.0), (0, 20, 3.0)], 20), run_result(1, 30, [(0, 10, 2.0), (0, 20, 5.0)], 20)],
            "b": [run_result(1, 30, [(0, 10, 4.0), (0, 20, 4.0)], 20)]}
    report.plot_validation_curves(runs, tmp_path / "curves.png")
    assert Image.open(tmp_path / "curves.png").size == (960, 540)  # 8 x 4.5 inches at 120 dpi


def test_replace_block_rewrites_only_between_the_markers(tmp_path):
    markers = ("<!-- begin -->", "<!-- end -->")
    path = tmp_path / "doc.md"
    path.write_text("intro\n<!-- begin -->\nold\ntable\n<!-- end -->\noutro\n")
    report.replace_block(path, markers, "new | table")
    assert path.read_text() == "intro\n<!-- begin -->\nnew | table\n<!-- end -->\noutro\n"
    report.replace_block(path, markers, "again")  # idempotent shape: the markers stay
    assert path.read_text() == "intro\n<!-- begin -->\nagain\n<!-- end -->\noutro\n"
    for broken in ("no markers\n", "<!-- begin -->\na\n<!-- end -->\n<!-- begin -->\nb\n<!-- end -->\n"):
        path.write_text(broken)
        with pytest.raises(ValueError, match="doc.md: expected the markers"):
            report.replace_block(path, markers, "x")
        assert path.read_text() == broken


def test_the_readme_and_results_carry_the_report_markers():
    for document, key in ((REPO / "README.md", "readme"), (REPO / "benchmarks" / "RESULTS.md", "results")):
        text = document.read_text()
        assert all(text.count(marker) == 1 for marker in report.MARKERS[key]), document


def test_readme_table_puts_the_papers_figures_and_each_gpu_config_beside_ours():
    papers = yaml.safe_load((REPO / "benchmarks" / "papers.yaml").read_text())
    assert set(papers) == set(zoo.METHODS)
    row = {key: (20.0, 1.0) for key in zoo.KEYS} | {"train_minutes": 1.0, "runs": 3}
    comparison = {"rows": {method: dict(row) for method in zoo.METHODS}, "reranked": {"cada (re-ranked)": dict(row)}}
    comparison["rows"]["uit"]["R1"], comparison["rows"]["uit"]["mAP"] = (30.0, 2.0), (25.0, 1.5)
    lines = report.readme_table(comparison, papers).splitlines()
    assert len(lines) == 2 + len(zoo.METHODS)
    uit = next(line for line in lines if line.startswith("| `uit`"))
    assert "| **30.00 ± 2.00** | **25.00 ± 1.50** |" in uit and papers["uit"]["cuhk-pedes"] in uit  # the best in bold
    assert "| `lgur` | 20.00 ± 1.00 | 20.00 ± 1.00 |" in lines[-2]
    assert "(re-ranked 20.00)" in next(line for line in lines if line.startswith("| `cada`"))
    for method in zoo.METHODS:
        for dataset in report.DATASETS:
            assert f"(configs/{method}_{dataset}.yaml)" in report.readme_table(comparison, papers)
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
