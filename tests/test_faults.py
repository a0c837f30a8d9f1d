"""Faults and bad input: every case gets a sentence naming the file, record, field or argument, and
nothing is lost or left half-written.

The bad inputs are parametrised cases; the kills are real ``kill -9`` of ``train.py`` subprocesses at
named STATES (the ``TIREID_TEST_KILL_AT`` hook of ``tireid_hf.faults``), never after a sleep.
"""

import json
import os
import random
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from test_data_readers import make_release, write_annotations
from test_hub import fake_results
from test_training_run import CONFIG
from tester import IMAGE_SIZE, ModelTester
from tireid_hf.cli import main as cli_main
from tireid_hf.data import DatasetFormatError, load_tireid_dataset
from tireid_hf.metrics import rank_metrics
from tireid_hf.processing import TIReIDProcessor
from tireid_hf.training import command_line_main
from tireid_hf.training import main as train_main
from tireid_hf.training.checkpoints import CheckpointError, TrainingProgress
from tireid_hf.faults import KILL_AT_ENV

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------
# Malformed annotations and images of a raw release


def _record(records, index=0, **changes):
    records[index].update(changes)
    return records


ANNOTATION_CASES = {
    # name: (change to the records, expected message)
    "caption of control characters": (lambda r: _record(r, 1, captions=["\x00\x07\x1b"]),
                                      r"record 1: field 'captions\[0\]' is empty, invisible"),
    "caption of zero-width characters": (lambda r: _record(r, 2, captions=["ok", "\u200b\u200d\ufeff"]),
                                         r"record 2: field 'captions\[1\]' is empty, invisible"),
    "caption of unicode spaces": (lambda r: _record(r, 0, captions=["\u3000\u2028 \n"]),
                                  r"record 0: field 'captions\[0\]' is empty, invisible"),
    "path escaping the root": (lambda r: _record(r, 3, file_path="../../outside.png"),
                               r"record 3: field 'file_path' is '../../outside.png', which points outside imgs/"),
    "path escaping through a folder": (lambda r: _record(r, 1, file_path="train/../../outside.png"),
                                       r"record 1: field 'file_path' .* points outside imgs/"),
    "absolute path": (lambda r: _record(r, 0, file_path="/etc/hostname"),
                      r"record 0: field 'file_path' is '/etc/hostname', which points outside imgs/"),
}


@pytest.mark.parametrize("case", sorted(ANNOTATION_CASES))
def test_malformed_annotation_is_refused_naming_record_and_field(tmp_path, case):
    change, message = ANNOTATION_CASES[case]
    records = make_release(tmp_path, "cuhk-pedes")
    (tmp_path.parent / "outside.png").write_bytes((tmp_path / "imgs" / records[0]["file_path"]).read_bytes())
    write_annotations(tmp_path, "reid_raw.json", change(records))
    with pytest.raises(DatasetFormatError, match=r"reid_raw.json: " + message):
        load_tireid_dataset("cuhk-pedes", tmp_path)


def test_a_path_that_stays_inside_the_root_is_kept_normalised(tmp_path):
    records = make_release(tmp_path, "cuhk-pedes")
    path = records[0]["file_path"]
    write_annotations(tmp_path, "reid_raw.json", _record(records, 0, file_path=f"val/../{path}"))
    assert load_tireid_dataset("cuhk-pedes", tmp_path)["train"]["image_path"][0] == f"imgs/{path}"


def test_non_utf8_annotation_file_is_named(tmp_path):
    make_release(tmp_path, "cuhk-pedes")
    annotation = tmp_path / "reid_raw.json"
    annotation.write_bytes(annotation.read_bytes().replace(b"person 12", "persön 12".encode("latin-1")))
    with pytest.raises(DatasetFormatError, match=r"reid_raw.json: not UTF-8 text \(byte \d+, line \d+"):
        load_tireid_dataset("cuhk-pedes", tmp_path)


def _truncate_an_image_to_a_jpeg_head(root: Path, records) -> Path:
    """Replaces the first record's image by the first half of a JPEG (its header is intact)."""
    path = root / "imgs" / records[0]["file_path"]
    Image.effect_noise((64, 128), 60).convert("RGB").save(path.with_suffix(".jpg"), quality=90)
    data = path.with_suffix(".jpg").read_bytes()
    path.with_suffix(".jpg").write_bytes(data[: len(data) // 2])
    records[0]["file_path"] = records[0]["file_path"].replace(".png", ".jpg")
    write_annotations(root, "reid_raw.json", records)
    with Image.open(path.with_suffix(".jpg")) as image:
        image.verify()  # the header check alone passes: only a decode finds the damage
    return path.with_suffix(".jpg")


def test_truncated_jpeg_is_refused_by_load_and_by_prepare(tmp_path):
    root = tmp_path / "raw"
    records = make_release(root, "cuhk-pedes")
    truncated = _truncate_an_image_to_a_jpeg_head(root, records)
    with pytest.raises(DatasetFormatError, match=rf"record 0: image {truncated} is not decodable .*truncated"):
        load_tireid_dataset("cuhk-pedes", root)
    with pytest.raises(SystemExit, match=rf"record 0: image {truncated} is not decodable"):
        cli_main(["data", "prepare", "--dataset", "cuhk-pedes", "--root", str(root), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
    kept = load_tireid_dataset("cuhk-pedes", root, skip_bad_images=True)["train"]
    assert records[0]["file_path"] not in [path.removeprefix("imgs/") for path in kept["image_path"]]


# ---------------------------------------------------------------------------------------------------
# The processor: captions, and a folder without its tokenizer


@pytest.mark.parametrize("caption", ["", "   ", "\x00\x01", "\u200b", "\u200d\u2060\ufeff", "\t\u3000\n", None])
def test_processor_refuses_captions_without_a_visible_character(tiny_processor, caption):
    with pytest.raises(ValueError, match=r"strings with visible characters; .* at positions \[1\]"):
        tiny_processor(text=["a man", caption])


def test_processor_keeps_captions_with_one_visible_character(tiny_processor):
    assert tiny_processor(text=["\u200ba\u200b", "é"])["input_ids"].shape[0] == 2


def test_model_folder_without_tokenizer_json_is_refused(tmp_path):
    TIReIDProcessor.for_image_size(IMAGE_SIZE).save_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'tokenizer.json'} is missing"):
        TIReIDProcessor.from_pretrained(tmp_path)
    from transformers import AutoProcessor

    with pytest.raises(FileNotFoundError, match="tokenizer.json is missing"):
        AutoProcessor.from_pretrained(tmp_path)


# ---------------------------------------------------------------------------------------------------
# Command-line arguments


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    ModelTester("clip_reid").model().save_pretrained(folder)
    TIReIDProcessor.for_image_size(IMAGE_SIZE).save_pretrained(folder)
    return folder


def _no_config(folder: Path) -> str:
    copy = folder.parent / "no-config"
    shutil.copytree(folder, copy, dirs_exist_ok=True)
    (copy / "config.json").unlink()
    return str(copy)


def _no_tokenizer(folder: Path) -> str:
    copy = folder.parent / "no-tokenizer"
    shutil.copytree(folder, copy, dirs_exist_ok=True)
    (copy / "tokenizer.json").unlink()
    return str(copy)


MODEL_ARGUMENT_CASES = {
    "a path that does not exist": (lambda folder: str(folder.parent / "never" / "trained"), r"no such folder"),
    "a relative path that does not exist": (lambda folder: "./out/../never", r"\./out/\.\./never: no such folder"),
    "a missing path shaped like a repo id": (lambda folder: "never/trained", r"never/trained: no such folder, and as a Hub"),
    "a file": (lambda folder: str(folder / "config.json"), r"config.json is a file; expected a model folder"),
    "a folder without config.json": (_no_config, r"no-config: no config.json"),
    "a folder without tokenizer.json": (_no_tokenizer, r"no-tokenizer/tokenizer.json is missing"),
}


@pytest.mark.parametrize("case", sorted(MODEL_ARGUMENT_CASES))
def test_evaluate_names_a_bad_model_argument(saved_model, small_synthetic_options, case):
    model, message = MODEL_ARGUMENT_CASES[case]
    with pytest.raises(SystemExit, match=r"^tireid evaluate: --model .*" + message):
        cli_main(["evaluate", "--model", model(saved_model), "--dataset", "synthetic", *small_synthetic_options])


def test_demo_app_names_a_bad_model_argument(saved_model, tmp_path):
    from test_space import app

    with pytest.raises(SystemExit, match=r"^app.py: --model .*no-config: no config.json"):
        app.main(["--model", _no_config(saved_model), "--cache-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"^app.py: --model .*never/trained: no such folder"):
        app.main(["--model", str(tmp_path / "never" / "trained"), "--cache-dir", str(tmp_path)])


def test_evaluate_names_an_unknown_dataset(saved_model):
    with pytest.raises(SystemExit, match=r"^tireid evaluate: unknown dataset 'bogus': not one of cuhk-pedes, icfg-pedes, "
                       r"rstpreid, synthetic, not a local folder, and datasets.load_dataset cannot read it as a Hub"):
        cli_main(["evaluate", "--model", str(saved_model), "--dataset", "bogus"])


def test_push_dry_run_into_an_existing_folder_offers_an_option_that_exists(saved_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(saved_model, model)
    (model / "results.json").write_text(json.dumps(fake_results("clip_reid")))
    (tmp_path / "taken").mkdir()
    with pytest.raises(SystemExit, match="taken already exists .*--overwrite"):
        cli_main(["push", "--model", str(model), "--repo", "org/x", "--dry-run", str(tmp_path / "taken")])
    assert cli_main(["push", "--model", str(model), "--repo", "org/x", "--dry-run", str(tmp_path / "taken"),
                     "--overwrite"]) == 0
    assert (tmp_path / "taken" / "model.safetensors").is_file()


@pytest.mark.parametrize("repo", ["org/has space", "a/b/c", "org/" + "x" * 100, "org/--double", "org/x..y"],
                         ids=["space", "two slashes", "too long", "double dash", "double dot"])
def test_push_refuses_an_invalid_hub_repo_id_before_any_work(tmp_path, repo):
    for command in (["push", "--model", str(tmp_path / "never-read"), "--dry-run", str(tmp_path / "out")],
                    ["push-metric", "--dry-run", str(tmp_path / "out")],
                    ["data", "push", "--data", str(tmp_path / "never-read")]):
        with pytest.raises(SystemExit, match=r"--repo .* is not a valid Hub repo id"):
            cli_main([*command, "--repo", repo])
    assert not (tmp_path / "out").exists()


def test_push_metric_dry_run_offers_overwrite(tmp_path):
    (tmp_path / "space").mkdir()
    with pytest.raises(SystemExit, match="space already exists .*--overwrite"):
        cli_main(["push-metric", "--dry-run", str(tmp_path / "space")])
    assert cli_main(["push-metric", "--dry-run", str(tmp_path / "space"), "--overwrite"]) == 0


# ---------------------------------------------------------------------------------------------------
# The metric


@pytest.mark.parametrize("pids", [["a", "b"], [b"x", b"y"], [1, None]], ids=["strings", "bytes", "a None"])
def test_metric_names_non_integer_pids(pids):
    with pytest.raises(TypeError, match=r"`query_pids` must hold integer pids, got \["):
        rank_metrics(torch.rand(2, 3), pids, [0, 1, 0])
    with pytest.raises(TypeError, match=r"`gallery_pids` must hold integer pids"):
        rank_metrics(torch.rand(3, 2), [0, 1, 0], pids)


def test_metric_module_names_string_pids_and_no_queries():
    import evaluate

    from tireid_hf.metrics import METRIC_PATH

    metric = evaluate.load(METRIC_PATH)
    with pytest.raises(TypeError, match=r"`references` must hold integer pids, got \['a'\]"):
        metric.compute(predictions=[[0.1, 0.2]], references=["a"], gallery_pids=[0, 1])
    with pytest.raises(TypeError, match=r"`gallery_pids` must hold integer pids"):
        metric.compute(predictions=[[0.1, 0.2]], references=[0], gallery_pids=["a", "b"])
    with pytest.raises(ValueError, match="there are no queries"):
        metric.compute(predictions=[], references=[], gallery_pids=[0, 1])
    with pytest.raises(ValueError, match="there are no queries"):
        rank_metrics(torch.zeros(0, 2), [], [0, 1])


# ---------------------------------------------------------------------------------------------------
# Training: arguments, output folder, corrupt checkpoints (one tiny in-process run)


def write_config(folder: Path, **changes) -> Path:
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, **changes}))
    return path


def test_output_dir_that_is_a_file_is_refused_in_one_sentence(tmp_path, capsys):
    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(SystemExit, match=r"^train.py: output_dir .*out is a file, not a folder"):
        command_line_main(["--config", str(write_config(tmp_path)), "--output_dir", str(tmp_path / "out")])
    (tmp_path / "bad.yaml").write_text("learning_rat: 0.1\n")
    with pytest.raises(SystemExit, match=r"^train.py: .*unknown key\(s\) \['learning_rat'\]"):
        command_line_main(["--config", str(tmp_path / "bad.yaml")])


def test_train_py_under_accelerate_launch_stops_with_one_message(tmp_path):
    (tmp_path / "out").write_text("not a folder")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    completed = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--quiet", "--num_processes", "1", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "train.py"),
         "--config", str(write_config(tmp_path)), "--output_dir", str(tmp_path / "out")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr, completed.stderr
    assert f"train.py: output_dir {tmp_path / 'out'} is a file, not a folder" in completed.stderr


def test_model_card_names_the_versions_its_numbers_depend_on():
    from tireid_hf.hub.model_card import render_model_card

    results = {**fake_results("clip_reid"), "library_versions": {"torch": "2.13.0", "pillow": "12.3.0"}}
    config = ModelTester("clip_reid").config()
    card = render_model_card(results, config, repo_id="org/x").text
    assert "computed with\ntorch 2.13.0, pillow 12.3.0; use" in card
    assert 'AutoProcessor.from_pretrained("org/x", trust_remote_code=True)' in card


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny finished run: 6 steps, checkpoints at 3 and 6."""
    folder = tmp_path_factory.mktemp("run")
    train_main(["--config", str(write_config(folder, save_steps=3)), "--output_dir", str(folder / "out"),
                "--max_steps", "6"])
    return folder / "out"


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.bin", "random_states_0.pkl", "progress.json"])
def test_resume_from_a_truncated_checkpoint_file_names_the_file(finished_run, tmp_path, name):
    checkpoint = tmp_path / "checkpoint-3"
    shutil.copytree(finished_run / "checkpoints" / "checkpoint-3", checkpoint)
    _truncate(checkpoint / name)
    arguments = ["--config", str(write_config(tmp_path)), "--output_dir", str(tmp_path / "out"),
                 "--max_steps", "6", "--resume_from_checkpoint", str(checkpoint)]
    message = re.escape(str(checkpoint / name)) + " is truncated or (altered|corrupt)"
    with pytest.raises(CheckpointError, match=message):
        train_main(arguments)
    with pytest.raises(SystemExit, match=r"^train.py: .*" + message):
        command_line_main(arguments)
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_altered_checkpoint_file_of_the_same_size_is_found(finished_run, tmp_path):
    checkpoint = tmp_path / "checkpoint-3"
    shutil.copytree(finished_run / "checkpoints" / "checkpoint-3", checkpoint)
    data = bytearray((checkpoint / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (checkpoint / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model.safetensors is corrupt \(its SHA-256 differs"):
        train_main(["--config", str(write_config(tmp_path)), "--output_dir", str(tmp_path / "out"),
                    "--max_steps", "6", "--resume_from_checkpoint", str(checkpoint)])


def test_saved_files_have_the_usual_permissions(finished_run):
    usual = 0o666 & ~_umask()
    files = [path for path in finished_run.rglob("*") if path.is_file()]
    assert any(path.name == "model.safetensors" for path in files)
    wrong = {str(path.relative_to(finished_run)): oct(stat.S_IMODE(path.stat().st_mode)) for path in files
             if stat.S_IMODE(path.stat().st_mode) != usual}
    assert not wrong, f"expected {oct(usual)}: {wrong}"


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_resumed_runtime_adds_the_earlier_processes_time(tmp_path):
    progress = TrainingProgress(method="clip_reid", train_runtime_seconds=100.0)
    progress.save(tmp_path)
    resumed = TrainingProgress.load(tmp_path)
    resumed.start_clock()
    resumed.update_runtime()
    assert 100.0 <= resumed.train_runtime_seconds < 200.0  # counted once, not twice


def test_half_deleted_checkpoints_are_removed_by_the_next_run(finished_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(finished_run, out)
    half = out / "checkpoints" / "checkpoint-2"  # a pruning cut short by a kill before the .deleting rename
    shutil.copytree(out / "checkpoints" / "checkpoint-3", half)
    (half / "progress.json").unlink()
    (half / "model.safetensors").unlink()
    shutil.copytree(out / "checkpoints" / "checkpoint-3", out / "checkpoints" / "checkpoint-1.deleting")
    train_main(["--config", str(write_config(tmp_path)), "--output_dir", str(out), "--max_steps", "6",
                "--resume_from_checkpoint", "latest"])
    assert sorted(path.name for path in (out / "checkpoints").iterdir()) == ["checkpoint-3", "checkpoint-6"]


# ---------------------------------------------------------------------------------------------------
# Kills: train.py in subprocesses, killed with SIGKILL at named states


def train_process(folder: Path, *extra: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    """``python train.py`` on the test config into ``folder/out``; killed by SIGKILL at ``kill_at``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    env.pop(KILL_AT_ENV, None)
    if kill_at:
        env[KILL_AT_ENV] = kill_at
    command = [sys.executable, str(REPO / "train.py"), "--config", str(write_config(folder, save_steps=3)),
               "--output_dir", str(folder / "out"), "--max_steps", "12", *extra]
    completed = subprocess.run(command, env=env, cwd=folder, capture_output=True, text=True, timeout=600)
    expected = -9 if kill_at else 0
    assert completed.returncode == expected, (kill_at, completed.returncode, completed.stderr[-3000:])
    return completed


def assert_same_weights(file_a: Path, file_b: Path) -> None:
    a, b = load_file(file_a), load_file(file_b)
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"{file_a} and {file_b} differ in {different}"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    train_process(folder)
    return folder / "out"


def test_kills_at_random_steps_while_checkpointing_pruning_and_moving_resume_bit_identical(uninterrupted, tmp_path):
    """12 steps, checkpoints every 3 (2 kept), validation at 6 and 12; four kills, each resumed."""
    kill_step = random.Random().randint(1, 8)  # killed after this step's update, before its validation and checkpoint
    resume = ("--resume_from_checkpoint", "latest")
    train_process(tmp_path, kill_at=f"training_step:{kill_step}")
    checkpoints = tmp_path / "out" / "checkpoints"
    if not any(checkpoints.glob("checkpoint-*")):  # killed before the first checkpoint: nothing to resume, start again
        shutil.rmtree(tmp_path / "out")
        train_process(tmp_path, kill_at="checkpoint_written:9")
    else:
        train_process(tmp_path, *resume, kill_at="checkpoint_written:9")
    assert (checkpoints / "checkpoint-9.tmp").is_dir() and not (checkpoints / "checkpoint-9").exists()
    train_process(tmp_path, *resume, kill_at="checkpoint_pruning:12")
    assert (checkpoints / "checkpoint-6.deleting").is_dir()
    train_process(tmp_path, *resume, kill_at="final_move")
    out = tmp_path / "out"
    assert (out / "best" / "results.json").is_file() and not (out / "results.json").exists()  # the move was cut short
    assert len([path for path in out.iterdir() if path.is_file() and path.name != "training_args.yaml"]) == 1

    finished = train_process(tmp_path, *resume)  # completes the move; the run has finished
    assert "has finished already (step 12)" in finished.stdout + finished.stderr, finished.stderr[-2000:]
    assert not (out / "best").exists() and not list(out.glob(".*"))
    assert sorted(path.name for path in checkpoints.iterdir()) == ["checkpoint-12", "checkpoint-9"]
    assert_same_weights(out / "model.safetensors", uninterrupted / "model.safetensors")
    for name in ("checkpoint-9", "checkpoint-12"):
        assert_same_weights(checkpoints / name / "model.safetensors", uninterrupted / "checkpoints" / name / "model.safetensors")
    results, reference = (json.loads((folder / "results.json").read_text()) for folder in (out, uninterrupted))
    assert results["test"] == reference["test"] and results["best_validation"] == reference["best_validation"]
    untimed = [[{key: value for key, value in entry.items() if "per_second" not in key} for entry in run["history"]]
               for run in (results, reference)]
    assert untimed[0] == untimed[1], f"killed at step {kill_step}"
    runtimes = [TrainingProgress.load(checkpoints / name).train_runtime_seconds for name in ("checkpoint-9", "checkpoint-12")]
    assert 0 < runtimes[0] < runtimes[1] <= results["train_runtime_seconds"]  # every process' time, added up

    # ... and once more, to a larger max_steps: it trains on from step 12 and finishes as any run
    train_main(["--config", str(write_config(tmp_path, save_steps=3)), "--output_dir", str(out), "--max_steps", "18",
                "--resume_from_checkpoint", "latest"])
    longer = json.loads((out / "results.json").read_text())
    assert [entry["step"] for entry in longer["history"] if entry["kind"] == "validation"] == [6, 12, 18]
    assert not (out / "best").exists() and (out / "checkpoints" / "checkpoint-18").is_dir()


def test_overwrite_killed_early_keeps_the_previous_model_and_results(uninterrupted, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(uninterrupted, out)
    (out / "eval_results_synthetic_test.json").write_text("{}")  # a file of the previous run only
    before = {name: (out / name).read_bytes() for name in ("model.safetensors", "results.json", "config.json")}
    train_process(tmp_path, "--overwrite_output_dir", kill_at="training_step:2")
    for name, content in before.items():
        assert (out / name).read_bytes() == content, name
    assert (out / "eval_results_synthetic_test.json").is_file()
    assert not (out / "checkpoints").exists()  # the previous run's training state is gone, its model is not

    # again, killed while its finished model replaces the previous one: half-way there is no results.json
    # and no file of the previous model the new one replaces; the next start completes the move
    train_process(tmp_path, "--overwrite_output_dir", "--max_steps", "3", kill_at="final_move")
    assert not (out / "results.json").exists() and (out / "best" / "results.json").is_file()
    assert not [name for name in before if (out / name).exists() and (out / name).read_bytes() == before[name]]
    train_main(["--config", str(write_config(tmp_path, save_steps=3)), "--output_dir", str(out), "--max_steps", "3",
                "--resume_from_checkpoint", "latest"])
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["training"]["max_steps"] == 3 and results["history"][-1]["step"] == 3
    assert not (out / "eval_results_synthetic_test.json").exists()  # replaced runs leave nothing stale
    assert not list(out.glob(".*")) and not (out / "best").exists()


def test_unknown_metric_for_best_model_is_refused_before_training_in_one_sentence(tmp_path):
    with pytest.raises(SystemExit, match=r"^train.py: metric_for_best_model must be one of .*'R1'.*got 'R2'"):
        command_line_main(["--config", str(write_config(tmp_path)), "--output_dir", str(tmp_path / "out"),
                           "--metric_for_best_model", "R2"])
    assert not (tmp_path / "out").exists()
