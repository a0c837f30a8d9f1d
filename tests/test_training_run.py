"""Real training runs on generated data: one process, two (gloo) processes, resume equivalence,
model selection on validation and the output folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModel

from tireid_hf.data import load_tireid_dataset
from tireid_hf.modeling import METHODS
from tireid_hf.processing import TIReIDProcessor
from tireid_hf.retrieval import evaluate_split, rerank_policy, rerank_refusal
from tireid_hf.training import main
from tireid_hf.training.checkpoints import CheckpointManager

REPO = Path(__file__).resolve().parents[1]
# stages of a method's synthetic config run by the loop where more than one
MULTI_STAGE = {"lcr2s": 2}
# 12 train identities x 2 images x 2 captions = 48 pairs = 6 batches of 8 (4 identities x 2).
DATA = {"num_train_ids": 12, "num_validation_ids": 6, "num_test_ids": 6, "images_per_id": 2,
        "image_height": 64, "image_width": 32, "seed": 5}
CONFIG = {
    "method": "clip_reid",
    "dataset": "synthetic",
    "dataset_options": DATA,
    "model_config": {
        "image_size": [64, 32],
        "clip_config": {
            "projection_dim": 24,
            "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
            "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                              "patch_size": 16, "image_size": 32},
        },
    },
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 16,
    "instances_per_identity": 2,
    "learning_rate": 1.0e-3,
    "head_learning_rate_multiplier": 1.0,
    "warmup_epochs": 0.5,
    "eval_epochs": 1,
    "logging_steps": 2,
    "save_steps": 6,
    "report_to": "none",
    "seed": 7,
}


def write_config(folder: Path, **changes) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, **changes}))
    return path


def run(folder: Path, *extra: str, **changes) -> dict:
    main(["--config", str(write_config(folder, **changes)), "--output_dir", str(folder / "out"), *extra])
    return json.loads((folder / "out" / "results.json").read_text())


def test_single_process_run_learns_selects_on_validation_and_saves_a_loadable_model(tmp_path):
    results = run(tmp_path, "--max_steps", "18")
    out = tmp_path / "out"
    train_losses = [entry["train/loss"] for entry in results["history"] if entry["kind"] == "train"]
    assert len(train_losses) == 9 and train_losses[-1] < train_losses[0]
    validations = [entry for entry in results["history"] if entry["kind"] == "validation"]
    assert [entry["step"] for entry in validations] == [6, 12, 18]
    best = max(validations, key=lambda entry: entry["metrics"]["t2i/R1"])
    assert results["best_validation"]["metrics"]["t2i/R1"] == best["metrics"]["t2i/R1"]
    assert results["test"]["t2i/num_queries"] == 6 * 2 * 2  # test was evaluated once, on all its captions
    for name in ("config.json", "model.safetensors", "processor_config.json", "tokenizer.json", "training_args.yaml"):
        assert (out / name).is_file(), name
    assert not (out / "best").exists()
    model = AutoModel.from_pretrained(out)
    assert model.config.inference_only and model.id_classifier is None
    validation = load_tireid_dataset("synthetic", **DATA)["validation"]
    again = evaluate_split(model, TIReIDProcessor.from_pretrained(out), validation, show_progress=False)
    for key in ("t2i/R1", "t2i/R5", "t2i/mAP", "t2i/mINP"):
        assert again[key] == pytest.approx(results["best_validation"]["metrics"][key], abs=1e-4)
    # each test query's values, for paired comparisons: in caption order, averaging to the test metrics
    per_query = json.loads((out / "test_per_query.json").read_text())["t2i"]
    test = load_tireid_dataset("synthetic", **DATA)["test"]
    assert per_query["pid"] == [pid for pid, captions in zip(test["pid"], test["captions"]) for _ in captions]
    for key, name in (("R1", "t2i/R1"), ("R10", "t2i/R10"), ("AP", "t2i/mAP"), ("INP", "t2i/mINP")):
        assert 100 * sum(per_query[key]) / len(per_query[key]) == pytest.approx(results["test"][name], abs=1e-9)


def test_output_dir_of_another_run_is_refused_before_training(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results.json").write_text("{}")
    with pytest.raises(FileExistsError, match="overwrite_output_dir"):
        run(tmp_path, "--max_steps", "2")


class Interrupted(Exception):
    """Raised in a training run to simulate a kill at a chosen step."""


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory) -> Path:
    """12 steps (two epochs of 6 batches) without interruption; its output folder."""
    whole = tmp_path_factory.mktemp("whole")
    run(whole, "--max_steps", "12")
    return whole / "out"


# Killed right after the checkpoint at step 6 (an epoch boundary) or at step 4 (batch 4 of 6 of the
# first epoch: the resumed epoch must give batches 5 and 6 the image augmentation they would have had,
# seeded by their position in the epoch, not by their position after the resume point).
@pytest.mark.parametrize("stop_step", [6, 4], ids=["at-epoch-boundary", "mid-epoch"])
def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(stop_step, uninterrupted_run, tmp_path,
                                                                         monkeypatch):
    original_save = CheckpointManager.save

    def save_then_die(self, progress, scheduler):
        path = original_save(self, progress, scheduler)
        if progress.global_step == stop_step:
            raise Interrupted  # killed right after the first checkpoint
        return path

    monkeypatch.setattr(CheckpointManager, "save", save_then_die)
    with pytest.raises(Interrupted):
        run(tmp_path, "--max_steps", "12", "--save_steps", str(stop_step))
    monkeypatch.setattr(CheckpointManager, "save", original_save)
    checkpoints = CheckpointManager(tmp_path / "out" / "checkpoints", None, 0)
    assert [path.name for path in checkpoints.completed()] == [f"checkpoint-{stop_step}"]
    progress = json.loads((checkpoints.completed()[0] / "progress.json").read_text())
    assert (progress["epoch"], progress["batch_in_epoch"]) == (0, stop_step)  # of the epoch's 6 batches
    resumed = run(tmp_path, "--max_steps", "12", "--save_steps", str(stop_step), "--resume_from_checkpoint", "latest")

    final_whole = load_file(uninterrupted_run / "checkpoints" / "checkpoint-12" / "model.safetensors")
    final_parts = load_file(tmp_path / "out" / "checkpoints" / "checkpoint-12" / "model.safetensors")
    assert final_whole.keys() == final_parts.keys()
    for name in final_whole:
        torch.testing.assert_close(final_parts[name], final_whole[name], rtol=1e-5, atol=1e-6, msg=name)
    uninterrupted = json.loads((uninterrupted_run / "results.json").read_text())
    assert resumed["test"]["t2i/R1"] == pytest.approx(uninterrupted["test"]["t2i/R1"])


def test_resume_of_another_method_is_refused(tmp_path):
    run(tmp_path, "--max_steps", "6")
    progress = tmp_path / "out" / "checkpoints" / "checkpoint-6" / "progress.json"
    state = json.loads(progress.read_text())
    progress.write_text(json.dumps({**state, "method": "someone_else"}))
    with pytest.raises(ValueError, match="'someone_else' run"):
        run(tmp_path, "--max_steps", "12", "--resume_from_checkpoint", "latest")


@pytest.mark.slow
def test_two_gloo_processes_train_in_sync_and_count_every_validation_query_once(tmp_path):
    config = write_config(tmp_path, max_steps=6)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(REPO / "train.py"), "--config", str(config), "--output_dir", str(tmp_path / "out")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": "29571"}
    completed = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["num_processes"] == 2  # both ranks ran; the loop checks their weights agree
    checkpoint = tmp_path / "out" / "checkpoints" / "checkpoint-6"
    assert {path.name for path in checkpoint.glob("random_states_*.pkl")} == {"random_states_0.pkl", "random_states_1.pkl"}
    best = results["best_validation"]["metrics"]
    assert best["t2i/num_queries"] == 6 * 2 * 2  # every validation caption exactly once, no padding duplicates
    validation = load_tireid_dataset("synthetic", **DATA)["validation"]
    out = tmp_path / "out"
    single = evaluate_split(AutoModel.from_pretrained(out), TIReIDProcessor.from_pretrained(out), validation,
                            show_progress=False)
    for key in ("t2i/R1", "t2i/R5", "t2i/mAP", "t2i/mINP"):
        assert single[key] == pytest.approx(best[key], abs=1e-4)


def test_data_root_without_the_release_files_is_refused_naming_the_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="reid_raw.json"):
        main(["--dataset", "cuhk-pedes", "--data_root", str(tmp_path / "empty"), "--output_dir", str(tmp_path / "out"),
              "--report_to", "none"])
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_through_the_common_loop_from_its_synthetic_config(method, tmp_path):
    config = REPO / "configs" / f"{method}_synthetic.yaml"
    main(["--config", str(config), "--dataset_options", json.dumps(DATA), "--output_dir", str(tmp_path / "out"),
          "--max_steps", "3", "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "32",
          "--report_to", "none"])
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    stages = {entry["stage"] for entry in results["history"] if entry["kind"] == "train"}
    assert results["method"] == method and len(stages) == MULTI_STAGE.get(method, 1)
    trained = [entry for entry in results["history"] if entry["kind"] == "train"]
    assert all(key.startswith(("train/", "lr/")) or key in ("kind", "stage", "epoch", "step") for key in trained[-1])
    assert results["test"]["t2i/num_queries"] == DATA["num_test_ids"] * DATA["images_per_id"] * 2
    model = AutoModel.from_pretrained(tmp_path / "out")
    assert model.config.model_type == f"tireid-{method}" and model.config.inference_only
    if method == "cada":
        # every validation measures the matching head on held-out pairs; after 3 steps it is at chance,
        # so the re-ranked test evaluation is refused with the reason instead of re-ranking by noise
        validations = [entry["metrics"] for entry in results["history"] if entry["kind"] == "validation"]
        assert validations and all("itm/accuracy" in metrics for metrics in validations)
        if rerank_refusal(results["best_validation"]["metrics"]) is None:
            assert "validation_reranked" in results
        else:
            assert "test_reranked" not in results and "re-rank by noise" in results["rerank_skipped"]
            assert "validation_reranked" not in results  # the cheap gate spares the re-ranked validation


@pytest.mark.parametrize("gain", ["measured", "refused"])
def test_cada_re_ranks_test_only_when_re_ranking_raises_validation_r1(tmp_path, monkeypatch, gain):
    """The second gate: with the head's chance-level gate passed (forced here), the best model's validation
    split is re-ranked, and test is re-ranked only if that raised validation R@1 over the first stage's
    ("refused": the gate is told the first stage scored 100 more, so it must refuse)."""
    monkeypatch.setattr(rerank_policy, "rerank_refusal", lambda metrics: None)
    if gain == "refused":
        gate = rerank_policy.rerank_gain_refusal
        monkeypatch.setattr(rerank_policy, "rerank_gain_refusal",
                            lambda plain, reranked, k: gate({"t2i/R1": plain["t2i/R1"] + 100}, reranked, k))
    main(["--config", str(REPO / "configs" / "cada_synthetic.yaml"), "--dataset_options", json.dumps(DATA),
          "--output_dir", str(tmp_path / "out"), "--max_steps", "3", "--per_device_train_batch_size", "8",
          "--per_device_eval_batch_size", "32", "--report_to", "none"])
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    plain, reranked = results["best_validation"]["metrics"]["t2i/R1"], results["validation_reranked"]["t2i/R1"]
    model = AutoModel.from_pretrained(tmp_path / "out")
    validation = load_tireid_dataset("synthetic", **DATA)["validation"]
    assert reranked == pytest.approx(evaluate_split(model, TIReIDProcessor.from_pretrained(tmp_path / "out"), validation,
                                                    rerank=True, rerank_k=model.rerank_k, show_progress=False)["t2i/R1"])
    if gain == "refused":
        plain += 100
    if reranked > plain:
        assert "test_reranked" in results and "rerank_skipped" not in results
    else:
        assert "test_reranked" not in results
        assert results["rerank_skipped"] == (f"re-ranking each query's top {model.rerank_k} does not raise validation "
                                             f"R@1 ({plain:.2f} -> {reranked:.2f})")
