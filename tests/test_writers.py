"""One writer per output folder, outputs that overlap inputs, and replacements a kill cannot leave half-done.

Another writer is a real live process: a forked child holding the folder's lock until the test lets it
go (pipes, not sleeps). A dead writer is such a child killed with SIGKILL while it holds the lock. The
kills of a replacement stop a forked writer at each named step (``TIREID_TEST_KILL_AT``), and one stops
a real ``tireid index build --overwrite`` process between its two renames.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from test_cli_conventions import refused
from test_hub import trained_folder
from test_training_run import write_config
from tireid_hf.cli import main
from tireid_hf.faults import KILL_AT_ENV
from tireid_hf.files import (REPLACE_STEPS, FolderInUseError, atomic_directory, finish_replacement, lock_path,
                             refuse_overlap, writer_lock)
from tireid_hf.retrieval import GalleryIndex
from tireid_hf.training import command_line_main

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "reference"


def _forked(work) -> int:
    """Runs ``work()`` in a forked child that never returns into pytest; returns its pid."""
    pid = os.fork()
    if pid == 0:
        try:
            work()
        finally:
            os._exit(0)
    return pid


@contextlib.contextmanager
def another_writer(out: Path):
    """A live process holding the writer lock of `out` for the block; yields its pid."""
    ready_read, ready_write = os.pipe()
    done_read, done_write = os.pipe()

    def hold():
        os.close(done_write)  # else its own copy keeps the pipe open
        os.close(ready_read)
        with writer_lock(out):
            os.write(ready_write, b"1")
            os.read(done_read, 1)  # returns when the test closes its end

    pid = _forked(hold)
    os.close(ready_write)
    os.close(done_read)
    try:
        assert os.read(ready_read, 1) == b"1", "the child could not take the lock"
        yield pid
    finally:
        os.close(done_write)
        os.close(ready_read)
        os.waitpid(pid, 0)


def killed_writer(out: Path) -> int:
    """The pid of a process killed (SIGKILL) while it held the writer lock of `out`: its lock file stays."""
    with another_writer(out) as pid:
        os.kill(pid, signal.SIGKILL)
    assert json.loads(lock_path(out).read_text())["pid"] == pid
    return pid


def contents(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes)."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


# ----------------------------------------------------------------------------------------- the lock
def test_the_lock_names_its_holder_is_reentrant_and_goes_with_the_block(tmp_path):
    out = tmp_path / "out"
    with writer_lock(out):
        record = json.loads(lock_path(out).read_text())
        assert record["pid"] == os.getpid() and record["command"] and record["host"] and record["started"]
        with writer_lock(out), atomic_directory(out) as folder:  # re-entrant, also for a folder it holds
            (folder / "a").write_text("a")
    assert not lock_path(out).exists() and contents(out) == {"a": b"a"}
    assert lock_path(out) == tmp_path / ".out.lock"


def test_a_second_writer_is_refused_naming_the_first_and_a_dead_ones_lock_is_taken_over(tmp_path):
    out = tmp_path / "out"
    with another_writer(out) as pid:
        with pytest.raises(FolderInUseError, match=rf"{out} is being written by another process, pid {pid} on "):
            with atomic_directory(out):
                pass
        assert sorted(os.listdir(tmp_path)) == [".out.lock"]
    dead = killed_writer(out)
    with pytest.warns(UserWarning, match=rf"taking over the lock left by pid {dead} .*no longer running"):
        with atomic_directory(out) as folder:
            (folder / "a").write_text("a")
    assert sorted(os.listdir(tmp_path)) == ["out"]


# ------------------------------------------------------------------------ every writing command
@pytest.fixture(scope="module")
def inputs(tmp_path_factory, small_test_split):
    """A trained model folder (with results.json), a prepared-looking dataset folder and a photo folder."""
    folder = tmp_path_factory.mktemp("inputs")
    model, _ = trained_folder(folder, "clip_reid")
    prepared = folder / "prepared"
    (prepared / "data").mkdir(parents=True)
    (prepared / "README.md").write_text("a prepared dataset")
    photos = folder / "photos"
    photos.mkdir()
    for index, image in enumerate(small_test_split["image"][:2]):
        image.save(photos / f"person-{index}.png")
    return {"model": model, "prepared": prepared, "photos": photos}


def writing_commands(inputs: dict, out: Path, small: list[str]) -> dict[str, tuple[list[str], Path]]:
    """Every tireid command that writes a folder: its arguments writing `out` (or, for search, the folder it
    writes) and that folder."""
    model = str(inputs["model"])
    return {
        "index build": (["index", "build", "--model", model, "--dataset", "synthetic", "--out", str(out), *small], out),
        "export onnx": (["export", "onnx", "--model", model, "--out", str(out)], out),
        "convert irra": (["convert", "irra", str(FIXTURES / "irra_tiny.safetensors"), "--image-size", "32", "16",
                          "--out", str(out)], out),
        "convert openai-clip": (["convert", "openai-clip", str(FIXTURES / "openai_tiny.safetensors"), "--out", str(out)], out),
        "data prepare": (["data", "prepare", "--dataset", "synthetic", "--out", str(out), *small], out),
        "data push --dry-run": (["data", "push", "--data", str(inputs["prepared"]), "--repo", "org/d", "--dry-run", str(out)], out),
        "data export-synthetic": (["data", "export-synthetic", "--out", str(out), *small], out),
        "push --dry-run": (["push", "--model", model, "--repo", "org/m", "--dry-run", str(out)], out),
        "push-space --dry-run": (["push-space", "--model", "org/x", "--dry-run", str(out)], out),
        "push-metric --dry-run": (["push-metric", "--dry-run", str(out)], out),
        "cards": (["cards", "--configs", str(REPO / "configs"), "--out", str(out)], out),
        "pretrain-base": (["pretrain-base", "--out", str(out)], out),
        "search": (["search", "--model", model, "--images", str(inputs["photos"]), "--index", str(out), "--text", "a man"],
                   out),
    }


COMMANDS = list(writing_commands({"model": "", "prepared": "", "photos": ""}, Path("out"), []))
SLOW_TO_FINISH = {"export onnx", "pretrain-base"}  # their takeover runs the whole export / pretraining


@pytest.mark.parametrize("command", COMMANDS)
def test_a_second_writer_of_every_command_is_refused_naming_the_first(command, inputs, small_synthetic_options,
                                                                       tmp_path, capsys):
    argv, out = writing_commands(inputs, tmp_path / "out", small_synthetic_options)[command]
    with another_writer(out) as pid:
        line = refused(capsys, argv)
        assert f"{out} is being written by another process, pid {pid} on " in line, line
    assert not out.exists() and sorted(os.listdir(tmp_path)) == []


@pytest.mark.parametrize("command", [command for command in COMMANDS if command not in SLOW_TO_FINISH])
def test_every_command_takes_over_the_lock_of_a_killed_writer(command, inputs, small_synthetic_options, tmp_path,
                                                          capsys):
    argv, out = writing_commands(inputs, tmp_path / "out", small_synthetic_options)[command]
    dead = killed_writer(out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(argv) == 0
    said = [str(warning.message) for warning in caught] + capsys.readouterr().err.splitlines()  # search prints its own
    assert any(f"taking over the lock left by pid {dead} " in line for line in said), said
    assert out.is_dir() and not lock_path(out).exists()


@pytest.mark.parametrize("extra", [[], ["--overwrite_output_dir"], ["--resume_from_checkpoint", "latest"]])
def test_a_training_into_a_folder_another_run_writes_is_refused_naming_it(extra, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text("{}")
    with another_writer(out) as pid:
        with pytest.raises(SystemExit, match=rf"^train.py: {out} is being written by another process, pid {pid} on "):
            command_line_main(["--config", str(write_config(tmp_path)), "--output_dir", str(out), *extra])
    assert contents(out) == {"results.json": b"{}"}


# ---------------------------------------------------------------------------- outputs over inputs
def test_a_dry_run_or_an_export_into_the_model_folder_is_refused_leaving_it_byte_for_byte(inputs, capsys):
    model = inputs["model"]
    before = contents(model)
    line = refused(capsys, ["push", "--model", str(model), "--repo", "org/m", "--dry-run", str(model), "--overwrite"])
    assert line == f"tireid push: --dry-run {model} is --model {model}: an output must not overlap an input; choose another --dry-run"
    line = refused(capsys, ["export", "onnx", "--model", str(model), "--out", str(model), "--overwrite"])
    assert f"--out {model} is --model {model}" in line
    assert contents(model) == before and not lock_path(model).exists()


def test_outputs_inside_containing_or_linked_to_an_input_are_refused_before_anything_is_written(
        inputs, small_synthetic_options, tmp_path, capsys):
    model, prepared, photos = inputs["model"], inputs["prepared"], inputs["photos"]
    link = tmp_path / "link"
    link.symlink_to(model)
    checkpoints, configs, clip = tmp_path / "checkpoints", tmp_path / "configs", tmp_path / "runs" / "clip"
    for folder in (checkpoints, configs, clip):
        folder.mkdir(parents=True)
    (checkpoints / "ViT.pt").write_bytes((FIXTURES / "openai_tiny.safetensors").read_bytes())
    before = {folder: contents(folder) for folder in (model, prepared, photos, checkpoints, configs, clip)}
    cases = {
        ("index", "build", "--model", str(model), "--dataset", "synthetic", "--out", str(model / "index"),
         *small_synthetic_options): f"--out {model / 'index'} lies inside --model {model}",
        ("data", "push", "--data", str(prepared), "--repo", "o/d", "--dry-run", str(prepared.parent), "--overwrite"):
            f"--dry-run {prepared.parent} contains --data {prepared}",
        ("push", "--model", str(model), "--repo", "o/m", "--dry-run", str(link), "--overwrite"):
            f"--dry-run {link} is --model {model} (resolved: {model} and {model})",
        ("push-space", "--model", "org/x", "--gallery", str(photos), "--dry-run", str(photos.parent), "--overwrite"):
            f"--dry-run {photos.parent} contains --gallery {photos}",
        ("convert", "openai-clip", str(checkpoints / "ViT.pt"), "--out", str(checkpoints), "--overwrite"):
            f"--out {checkpoints} contains the checkpoint {checkpoints / 'ViT.pt'}",
        ("cards", "--configs", str(configs), "--out", str(configs / "cards")):
            f"--out {configs / 'cards'} lies inside --configs {configs}",
        ("search", "--model", str(model), "--images", str(photos), "--index", str(photos), "--text", "a"):
            f"--index {photos} is --images {photos}",
        ("search", "--model", str(model), "--images", str(photos), "--index", str(photos.parent), "--text", "a"):
            f"--index {photos.parent} contains --images {photos}",
    }
    for argv, named in cases.items():
        line = refused(capsys, list(argv))
        assert named in line and "an output must not overlap an input" in line, line
    assert {folder: contents(folder) for folder in before} == before
    assert not (model / "index").exists() and not (configs / "cards").exists()
    runs = clip.parent
    with pytest.raises(SystemExit, match=rf"^train.py: --output_dir {runs} contains --clip_name_or_path {clip}"):
        command_line_main(["--config", str(write_config(tmp_path, model_config={})), "--output_dir", str(runs),
                           "--clip_name_or_path", str(clip), "--overwrite_output_dir"])
    assert {folder: contents(folder) for folder in before} == before


def test_a_photo_folders_own_index_may_lie_inside_it_but_not_inside_the_model(tmp_path):
    refuse_overlap(tmp_path / "photos" / ".tireid-index", "--index", {"--images": tmp_path}, may_lie_inside=("--images",))
    with pytest.raises(ValueError, match="lies inside --model"):
        refuse_overlap(tmp_path / "index", "--index", {"--images": tmp_path / "x", "--model": tmp_path},
                       may_lie_inside=("--images",))


# ------------------------------------------------------------------------------ kills in a replacement
OLD = {"model.safetensors": b"old weights", "sub/config.json": b'{"old": true}', "only-old.txt": b"gone when new"}
NEW = {"model.safetensors": b"new weights, longer", "sub/config.json": b'{"new": true}'}


@pytest.mark.parametrize("step", ["building", *REPLACE_STEPS])
def test_a_kill_at_every_step_of_a_replacement_leaves_the_old_or_the_new_folder_complete(step, tmp_path):
    out = tmp_path / "out"
    with atomic_directory(out) as folder:
        for name, data in OLD.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)

    def replace():
        os.environ[KILL_AT_ENV] = step
        with atomic_directory(out, overwrite=True) as folder:
            for name, data in NEW.items():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(data)
            if step == "building":
                os.kill(os.getpid(), signal.SIGKILL)

    pid = _forked(replace)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    beside = {path.name.split("-")[0]: path for path in tmp_path.glob(".out.*-*")}
    if step == "replace_old_aside":  # the one state without `out`: both complete beside it
        assert not out.exists() and contents(beside[".out.old"]) == OLD and contents(beside[".out.tmp"]) == NEW
    with pytest.warns(UserWarning, match=f"taking over the lock left by pid {pid} "):
        with pytest.raises(FileExistsError, match="already exists"):  # the next writer of `out` completes it first
            with atomic_directory(out):
                pass
    assert contents(out) == (OLD if step == "building" else NEW)
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_a_kill_between_the_renames_of_index_build_overwrite_is_completed_by_the_next_command(
        inputs, small_synthetic_options, tmp_path, capsys):
    out = tmp_path / "index"
    argv = ["index", "build", "--model", str(inputs["model"]), "--dataset", "synthetic", "--out", str(out),
            *small_synthetic_options]
    assert main([*argv, "--precision", "int8"]) == 0
    old = contents(out)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src"), KILL_AT_ENV: "replace_old_aside"}
    killed = subprocess.run([sys.executable, "-m", "tireid_hf.cli", *argv, "--overwrite"], env=env,
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not out.exists()
    with pytest.warns(UserWarning, match="taking over the lock left by pid .* index build"):
        line = refused(capsys, argv)  # no --overwrite: the replacement is completed, then the folder is refused
    assert line.endswith(f"{out} already exists (pass overwrite=True, or --overwrite on the command line, to replace it)")
    assert contents(out) != old and len(GalleryIndex.load(out)) == 10
    assert sorted(os.listdir(tmp_path)) == ["index"]


def test_finish_replacement_leaves_a_folder_with_nothing_left_over_alone(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a").write_text("a")
    finish_replacement(out)
    assert contents(out) == {"a": b"a"} and sorted(os.listdir(tmp_path)) == ["out"]
