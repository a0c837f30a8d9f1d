"""hub_cards/: the model card of every checkpoint the zoo publishes, up to date with the templates and
configs, with complete Hub metadata read back by huggingface_hub itself; `tireid push --card`."""

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from tester import IMAGE_SIZE, ModelTester
from tireid_hf.cli import main
from tireid_hf.hub.catalogue import DEFAULT_ORG, RELEASED, render_catalogue, zoo_names
from tireid_hf.modeling import METHODS
from tireid_hf.processing import TIReIDProcessor

REPO = Path(__file__).resolve().parents[1]
HUB_CARDS = REPO / "hub_cards"
REGENERATE = "tireid cards --out hub_cards   (or: make cards), from the repository root"


def render_into(folder: Path, **options) -> Path:
    render_catalogue(folder, configs_dir=REPO / "configs", zoo_results_dir=REPO / "benchmarks", **options)
    return folder


def test_hub_cards_are_up_to_date_with_the_templates_configs_and_papers(tmp_path):
    fresh = render_into(tmp_path / "hub_cards")
    committed = sorted(path.relative_to(HUB_CARDS) for path in HUB_CARDS.rglob("*") if path.is_file())
    expected = sorted(path.relative_to(fresh) for path in fresh.rglob("*") if path.is_file())
    assert committed == expected, f"hub_cards/ holds other cards than the catalogue; regenerate: {REGENERATE}"
    stale = [str(name) for name in expected if (HUB_CARDS / name).read_text() != (fresh / name).read_text()]
    assert not stale, f"hub_cards/ is out of date ({', '.join(stale)}); regenerate: {REGENERATE}"


def test_the_catalogue_is_every_method_on_every_benchmark_plus_the_converted_irra_checkpoints():
    names = sorted(path.name for path in HUB_CARDS.iterdir())
    zoo = [name for name, _, _ in zoo_names()]
    assert len(zoo) == 15 and "lcr2s-icfg-pedes" in zoo and "clip_reid-rstpreid" in zoo
    assert names == sorted(zoo + ["irra-cuhk-pedes", "irra-icfg-pedes", "irra-rstpreid"])


@pytest.mark.parametrize("name", sorted(path.name for path in HUB_CARDS.iterdir()))
def test_every_card_has_complete_hub_metadata(name):
    card = ModelCard.load(HUB_CARDS / name / "README.md")
    data = card.data
    dataset = data.tireid_dataset
    assert data.base_model == "openai/clip-vit-base-patch16"
    assert data.datasets == [f"{DEFAULT_ORG}/{dataset}"]
    assert (data.pipeline_tag, data.library_name, data.license) == ("feature-extraction", "transformers", "other")
    assert f"{DEFAULT_ORG}/{name}" in card.text  # the loading examples name the card's own repository
    if name.startswith("irra-"):
        released, = [checkpoint for checkpoint in RELEASED if checkpoint.name == name]
        model_name, results = model_index_to_eval_results(data.to_dict()["model-index"])
        assert model_name == name
        assert [(result.metric_name, result.metric_value) for result in results] == list(
            zip(("R@1", "R@5", "R@10", "mAP", "mINP"), released.metrics))
        assert {(result.dataset_split, result.source_url) for result in results} == {("test", released.source_url)}
        assert all("reported" in result.source_name for result in results)
        assert "Reported by the authors, not measured by tireid-hf" in card.text
    else:
        method = data.tireid_method
        assert name == f"{method}-{dataset}"
        assert "model-index" not in data.to_dict() and data.eval_results is None  # no invented results
        assert "Not trained yet" in card.text
        config_text = (REPO / "configs" / f"{method}_{dataset}.yaml").read_text()
        assert config_text in card.text
        reported = METHODS[method][0].zoo_reported
        assert f"What the seed paper reports (not this model; its own backbone: {reported['backbone']})" in card.text
        assert (reported.get(dataset) or "not reported") in card.text


def trained_run(folder: Path, method: str, dataset: str) -> Path:
    model = ModelTester(method).model().eval()
    model.save_pretrained(folder)
    TIReIDProcessor.for_image_size(IMAGE_SIZE).save_pretrained(folder)
    metrics = {"t2i/R1": 61.25, "t2i/R5": 80.0, "t2i/R10": 86.5, "t2i/mAP": 55.0, "t2i/mINP": 30.0}
    (folder / "results.json").write_text(json.dumps({
        "method": method, "dataset": dataset, "test": metrics, "best_validation": {"metrics": metrics},
        "config": {"model": {"method": method, "clip_name_or_path": "openai/clip-vit-base-patch16"}}}))
    return folder


def test_a_trained_run_gets_the_card_of_its_results(tmp_path):
    trained_run(tmp_path / "runs" / "uit-rstpreid", "uit", "rstpreid")
    cards = render_into(tmp_path / "cards", runs_dir=tmp_path / "runs")
    card = ModelCard.load(cards / "uit-rstpreid" / "README.md")
    _, results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    assert {(result.dataset_split, result.metric_name, result.metric_value) for result in results} >= {
        ("test", "R@1", 61.25), ("validation", "mAP", 55.0)}
    assert "Not trained yet" not in card.text
    assert "model-index" not in ModelCard.load(cards / "uit-cuhk-pedes" / "README.md").data.to_dict()


def test_push_uploads_the_given_card_and_the_conversion_record(tmp_path):
    folder = tmp_path / "converted"
    ModelTester("clip_reid").model().save_pretrained(folder)
    TIReIDProcessor.for_image_size(IMAGE_SIZE).save_pretrained(folder)
    (folder / "conversion.json").write_text('{"format": "irra"}\n')  # a converted checkpoint: no results.json
    card = HUB_CARDS / "irra-cuhk-pedes" / "README.md"
    with pytest.raises(SystemExit, match="results.json is missing"):
        main(["push", "--model", str(folder), "--repo", "org/irra", "--dry-run", str(tmp_path / "no-card")])
    assert main(["push", "--model", str(folder), "--repo", "org/irra", "--dry-run", str(tmp_path / "out"),
                 "--card", str(card)]) == 0
    assert (tmp_path / "out" / "README.md").read_text() == card.read_text()
    assert (tmp_path / "out" / "conversion.json").is_file() and (tmp_path / "out" / "model.safetensors").is_file()
    with pytest.raises(SystemExit, match="describes a 'uit' model, but the model is 'tireid-clip_reid'"):
        main(["push", "--model", str(folder), "--repo", "org/irra", "--dry-run", str(tmp_path / "wrong"),
              "--card", str(HUB_CARDS / "uit-rstpreid" / "README.md")])
    assert not (tmp_path / "wrong").exists()


def test_the_synthetic_section_is_rendered_from_the_reports_json_and_absent_without_it(tmp_path):
    import json

    from tireid_hf.hub.zoo_results import synthetic_results
    summary = {"seeds": [0, 1, 2], "rows": {"clip_reid": {"R1": [40.0, 1.0], "mAP": [41.0, 0.5]},
                                           "uit": {"R1": [43.125, 0.25], "mAP": [44.0, 0.75]}},
               "differences": {"uit": {"R1": "+3.12 [+1.00, +5.25]"}}}
    ablations = {"contributions": {"uit": "uit: no restoration (TIR)"},
                 "differences": {"uit: no restoration (TIR)": {"R1": "-2.50 [-4.00, -1.00]"}}}
    (tmp_path / "zoo_summary.json").write_text(json.dumps(summary))
    assert synthetic_results("uit", tmp_path) is None  # the ablations are missing
    (tmp_path / "zoo_ablations.json").write_text(json.dumps(ablations))
    assert synthetic_results("clip_reid", tmp_path)["attribution"] is None
    cards = render_catalogue(tmp_path / "cards", configs_dir=REPO / "configs", zoo_results_dir=tmp_path)
    text = (tmp_path / "cards" / "uit-cuhk-pedes" / "README.md").read_text()
    assert "test\nR@1 43.12 ± 0.25, mAP 44.00 ± 0.75 (mean ± standard deviation over seeds\n0, 1, 2)" in text
    assert ("**uit**: ΔR@1 over the baseline +3.12 [+1.00, +5.25] (full budget). The paper's own contribution (row "
            "`no restoration (TIR)`): -2.50 [-4.00, -1.00] without it — it carries 2.50 points of R@1.") in text
    assert "## On the zoo's synthetic benchmark" in (tmp_path / "cards" / "irra-cuhk-pedes" / "README.md").read_text()
    render_catalogue(tmp_path / "plain", configs_dir=REPO / "configs")
    assert "On the zoo's synthetic benchmark" not in (tmp_path / "plain" / "uit-cuhk-pedes" / "README.md").read_text()
    assert len(cards) == 18
