"""`tireid push` / `tireid push-metric`: the folders they prepare, the model card, and the uploads."""

import importlib.util
import json
import time

import pytest
from huggingface_hub import ModelCard, RepoCard
from safetensors.torch import load_file
from transformers import CLIPImageProcessor, CLIPTokenizer

from helpers import FakeApi, assert_remote_code_matches
from tester import IMAGE_SIZE, ModelTester
from tireid_hf.cli import main
from tireid_hf.hub import upload
from tireid_hf.hub.metric_space import push_metric_space, write_metric_space
from tireid_hf.hub.model_push import push_model
from tireid_hf.processing import TIReIDProcessor

SMALL = dict(num_train_ids=4, num_validation_ids=3, num_test_ids=5, images_per_id=2)


def fake_results(method: str) -> dict:
    """A results.json as train.py writes it, with numbers to find again in the model card."""
    test = {"t2i/R1": 41.5, "t2i/R5": 70.25, "t2i/R10": 88.0, "t2i/mAP": 45.678, "t2i/mINP": 21.0, "t2i/num_queries": 20}
    validation = {"t2i/R1": 35.0, "t2i/R5": 65.0, "t2i/R10": 80.0, "t2i/mAP": 40.0, "t2i/mINP": 19.5}
    return {
        "method": method, "dataset": "synthetic", "tireid_hf_version": "0.1.0", "num_processes": 1,
        "best_validation": {"kind": "validation", "step": 3, "metrics": validation},
        "test": test, "train_runtime_seconds": 12.5,
        "config": {"model": {"method": method, "clip_name_or_path": "openai/clip-vit-base-patch16"},
                   "data": {"dataset": "synthetic", "dataset_options": SMALL}, "training": {"learning_rate": 1e-5}},
    }


def trained_folder(tmp_path, method: str):
    """A training checkpoint (with its training-only parts) as train.py leaves it, and its model."""
    model = ModelTester(method).model().eval()
    folder = tmp_path / f"trained-{method}"
    model.save_pretrained(folder)
    TIReIDProcessor.for_image_size(IMAGE_SIZE).save_pretrained(folder)
    (folder / "results.json").write_text(json.dumps(fake_results(method)))
    return folder, model


def test_dry_run_folder_loads_without_the_package_and_its_card_holds_the_run(tmp_path):
    folder, model = trained_folder(tmp_path, "clip_reid")
    out = tmp_path / "dry"
    assert main(["push", "--model", str(folder), "--repo", "org/tiny-clip", "--dry-run", str(out)]) == 0
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".dry")]  # no temporary left

    config = json.loads((out / "config.json").read_text())
    assert config["inference_only"] is True and set(config["auto_map"]) == {"AutoConfig", "AutoModel"}
    assert not any("id_classifier" in name for name in load_file(out / "model.safetensors"))  # training-only: dropped
    for name in ("README.md", "results.json", "processor_config.json", "tokenizer.json", "modeling_clip_reid.py", "base.py"):
        assert (out / name).is_file(), name

    inputs = ModelTester("clip_reid").inputs()
    assert_remote_code_matches(out, model, inputs, tmp_path, processor=TIReIDProcessor.for_image_size(IMAGE_SIZE))
    assert CLIPImageProcessor.from_pretrained(out).size["height"] == IMAGE_SIZE[0]  # the card's way without tireid_hf
    assert CLIPTokenizer.from_pretrained(out).model_max_length == 77

    card = ModelCard.load(out / "README.md")
    data = card.data
    assert (data.library_name, data.pipeline_tag, data.license) == ("transformers", "feature-extraction", "apache-2.0")
    assert data.base_model == "openai/clip-vit-base-patch16" and "text-to-image-retrieval" in data.tags
    found = {(result.dataset_split, result.metric_name): result.metric_value for result in data.eval_results}
    assert found[("test", "R@1")] == 41.5 and found[("test", "mAP")] == 45.68 and found[("test", "mINP")] == 21.0
    assert found[("validation", "R@10")] == 80.0 and len(found) == 10
    assert "## clip_reid: the CLIP baseline" in card.text and "trust_remote_code=True" in card.text
    assert "Out of scope, and not to be used for" in card.text and "learning_rate: 1.0e-05" in card.text


def test_uit_folder_shows_the_restoration_and_cada_reports_the_reranked_test(tmp_path):
    folder, _ = trained_folder(tmp_path, "uit")
    out = tmp_path / "uit"
    assert main(["push", "--model", str(folder), "--repo", "org/tiny-uit", "--dry-run", str(out)]) == 0
    assert (out / "restoration.png").is_file() and "![restoration](restoration.png)" in (out / "README.md").read_text()

    folder, _ = trained_folder(tmp_path, "cada")
    results = json.loads((folder / "results.json").read_text())
    results["test_reranked"] = dict(results["test"], **{"t2i/R1": 50.0})
    (folder / "results.json").write_text(json.dumps(results))
    main(["push", "--model", str(folder), "--repo", "org/tiny-cada", "--dry-run", str(tmp_path / "cada")])
    card = ModelCard.load(tmp_path / "cada" / "README.md")
    assert {(r.metric_name, r.metric_value) for r in card.data.eval_results} >= {("R@1 (re-ranked)", 50.0), ("R@1", 41.5)}
    assert "rerank=True" in card.text


def test_push_refuses_bad_folders_with_the_file_named(tmp_path):
    folder, _ = trained_folder(tmp_path, "clip_reid")
    (folder / "results.json").unlink()
    with pytest.raises(SystemExit, match="results.json is missing"):
        main(["push", "--model", str(folder), "--repo", "org/x", "--dry-run", str(tmp_path / "out")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no config.json"):
        main(["push", "--model", str(tmp_path / "empty"), "--repo", "org/x", "--dry-run", str(tmp_path / "out")])
    (tmp_path / "taken").mkdir()
    (folder / "results.json").write_text(json.dumps(fake_results("clip_reid")))
    with pytest.raises(SystemExit, match="taken already exists"):
        main(["push", "--model", str(folder), "--repo", "org/x", "--dry-run", str(tmp_path / "taken")])


def test_push_offline_or_without_token_fails_fast_with_one_sentence(tmp_path, monkeypatch):
    started = time.perf_counter()
    with pytest.raises(SystemExit, match=r"^tireid push: Cannot push: the Hugging Face Hub is unreachable in offline mode"):
        main(["push", "--model", str(tmp_path / "never-read"), "--repo", "org/x"])
    with pytest.raises(SystemExit, match="tireid push-metric: Cannot push: .*offline mode"):
        main(["push-metric", "--repo", "org/metric"])
    assert time.perf_counter() - started < 5
    monkeypatch.setattr(upload.constants, "is_offline_mode", lambda: False)
    monkeypatch.setattr(upload, "get_token", lambda: None)
    with pytest.raises(SystemExit, match="Cannot push: no Hugging Face token found"):
        main(["push", "--model", str(tmp_path), "--repo", "org/x"])


def test_push_creates_the_repo_and_uploads_the_prepared_folder_once(tmp_path):
    folder, _ = trained_folder(tmp_path, "clip_reid")
    api = FakeApi()
    assert push_model(folder, "org/tiny-clip", private=True, api=api) == "https://huggingface.co/org/tiny-clip"
    assert api.calls[0] == ("create_repo", "org/tiny-clip", {"repo_type": "model", "private": True, "exist_ok": True})
    (_, upload_call), = api.calls[1:]
    assert upload_call["repo_id"] == "org/tiny-clip" and upload_call["repo_type"] == "model"
    assert {"README.md", "config.json", "model.safetensors", "results.json", "tokenizer.json"} <= set(upload_call["files"])

    api = FakeApi()
    assert push_metric_space("org/metric", api=api) == "https://huggingface.co/spaces/org/metric"
    assert api.calls[0] == ("create_repo", "org/metric",
                            {"repo_type": "space", "private": False, "exist_ok": True, "space_sdk": "gradio"})
    assert api.calls[1][1]["files"] == ["README.md", "app.py", "ranking.py", "requirements.txt", "tireid_retrieval.py"]


def test_metric_space_folder_is_a_gradio_space_that_computes(tmp_path, monkeypatch):
    out = write_metric_space(tmp_path / "metric")
    metadata = RepoCard.load(out / "README.md").data
    assert (metadata.sdk, metadata.app_file) == ("gradio", "app.py") and "evaluate" in metadata.tags
    assert (out / "requirements.txt").read_text() == "evaluate<0.5,>=0.4\ntorch>=2.4\nnumpy>=1.26\n"  # no tireid-hf
    monkeypatch.chdir(out)
    spec = importlib.util.spec_from_file_location("metric_space_app", out / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    assert app.compute("[[0.9, 0.1], [0.2, 0.8]]", "[0, 1]", "[0, 1]")["R1"] == 100.0
