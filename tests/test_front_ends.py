"""The front ends (`tireid`, `train.py`, the Space) show an error of the user or of the system (a full
disk, a read-only output) as one line naming the path and the cause, exit status 2, with nothing
half-written; an unexpected exception (a bug) keeps its traceback."""

import errno
import os
import tempfile
from pathlib import Path

import pytest

from tester import ModelTester
from test_training_run import write_config
from tireid_hf.cli import main as tireid
from tireid_hf.errors import TIReIDInputError, one_line
from tireid_hf.training import command_line_main


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, tiny_processor):
    folder = tmp_path_factory.mktemp("model")
    ModelTester("clip_reid").model().export_for_inference().eval().save_pretrained(folder)
    tiny_processor.save_pretrained(folder)
    return folder


def _inside(path, folder: Path) -> bool:
    return Path(os.fsdecode(path)).resolve().is_relative_to(folder.resolve())


def read_only(monkeypatch, folder: Path) -> None:
    """Every file or folder created inside ``folder`` fails as on a read-only file system (EROFS)."""
    def refusing(original, argument):
        def call(*args, **kwargs):
            target = kwargs.get(argument) if argument in kwargs else args[0] if args else None
            if target is not None and _inside(target, folder):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(target))
            return original(*args, **kwargs)
        return call

    monkeypatch.setattr(tempfile, "mkstemp", refusing(tempfile.mkstemp, "dir"))
    monkeypatch.setattr(tempfile, "mkdtemp", refusing(tempfile.mkdtemp, "dir"))
    monkeypatch.setattr(Path, "mkdir", refusing(Path.mkdir, "self"))


def disk_full(monkeypatch, owner, name: str, folder: Path) -> None:
    """``owner.name(..., path)`` writing inside ``folder`` fails with ENOSPC (no space left) naming the file."""
    original = getattr(owner, name)

    def call(*args, **kwargs):
        for argument in [*args, *kwargs.values()]:
            if isinstance(argument, (str, os.PathLike)) and _inside(argument, folder):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fsdecode(argument))
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, call)


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()) if folder.exists() else []


def test_one_line_of_each_kind_of_error():
    assert one_line(OSError(errno.ENOSPC, "ignored", "/data/out/x.json")) == "/data/out/x.json: No space left on device"
    assert one_line(OSError(errno.EXDEV, "x", "/a", None, "/b")) == "/a -> /b: Invalid cross-device link"
    assert one_line(PermissionError(errno.EACCES, "Permission denied")) == "Permission denied"
    assert one_line(FileNotFoundError("--images x: no such folder")) == "--images x: no such folder"
    assert one_line(TIReIDInputError("first line\n  second line")) == "first line second line"
    assert one_line(RuntimeError("a bug")) is None and one_line(KeyError("k")) is None


def _commands(model: Path, out: Path, options: list[str]) -> dict:
    return {
        "index build": ["index", "build", "--model", str(model), "--dataset", "synthetic", "--out", str(out / "index"),
                        *options],
        "export onnx": ["export", "onnx", "--model", str(model), "--out", str(out / "onnx")],
        "evaluate": ["evaluate", "--model", str(model), "--dataset", "synthetic", "--output", str(out / "eval.json"),
                     *options],
    }


@pytest.mark.parametrize("command", ["index build", "export onnx", "evaluate"])
def test_a_read_only_output_is_one_line_naming_it(saved_model, small_synthetic_options, tmp_path, monkeypatch, capsys,
                                                  command):
    out = tmp_path / "out"
    out.mkdir()
    read_only(monkeypatch, out)
    with pytest.raises(SystemExit) as exit_:
        tireid(_commands(saved_model, out, small_synthetic_options)[command])
    line = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars
    assert exit_.value.code == 2 and line == str(exit_.value)
    assert line.startswith(f"tireid {command}: {out}") and line.endswith(": Read-only file system")
    assert files_under(out) == []


@pytest.mark.parametrize("command", ["index build", "export onnx", "evaluate"])
def test_a_full_disk_is_one_line_naming_the_file(saved_model, small_synthetic_options, tmp_path, monkeypatch, capsys,
                                                 command):
    import torch

    from tireid_hf.retrieval import index

    out = tmp_path / "out"
    out.mkdir()
    writer = {"index build": (index, "save_file"), "export onnx": (torch.onnx, "export"), "evaluate": (Path, "write_text")}
    disk_full(monkeypatch, *writer[command], out)
    with pytest.raises(SystemExit) as exit_:
        tireid(_commands(saved_model, out, small_synthetic_options)[command])
    line = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars
    assert exit_.value.code == 2 and line == str(exit_.value)
    assert line.startswith(f"tireid {command}: {out}") and line.endswith(": No space left on device")
    assert files_under(out) == []


def test_an_unexpected_exception_keeps_its_traceback(saved_model, small_synthetic_options, tmp_path, monkeypatch):
    from tireid_hf.retrieval import GalleryIndex

    def bug(*args, **kwargs):
        raise RuntimeError("a bug in build")

    monkeypatch.setattr(GalleryIndex, "build", bug)
    with pytest.raises(RuntimeError, match="a bug in build"):
        tireid(_commands(saved_model, tmp_path, small_synthetic_options)["index build"])


TRAIN = ["--max_steps", "1", "--save_steps", "1"]


@pytest.mark.parametrize("failure", ["read-only", "disk full"])
def test_train_py_refuses_an_unwritable_output_in_one_line(tmp_path, monkeypatch, capsys, failure):
    out = tmp_path / "out"
    config = write_config(tmp_path)
    if failure == "read-only":
        read_only(monkeypatch, out)
    else:
        out.mkdir()
        disk_full(monkeypatch, Path, "write_text", out)
    with pytest.raises(SystemExit) as exit_:
        command_line_main(["--config", str(config), "--output_dir", str(out), *TRAIN])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_.value.code == 2 and line == str(exit_.value)
    cause = "Read-only file system" if failure == "read-only" else "No space left on device"
    assert line.startswith(f"train.py: {out}") and line.endswith(f": {cause}")
    assert [name for name in files_under(out) if not name.endswith(".lock")] == []


def test_train_py_keeps_the_traceback_of_a_bug(tmp_path, monkeypatch):
    from tireid_hf.training import loop

    def bug(*args, **kwargs):
        raise RuntimeError("a bug in the loop")

    monkeypatch.setattr(loop, "train", bug)
    with pytest.raises(RuntimeError, match="a bug in the loop"):
        command_line_main(["--config", str(write_config(tmp_path)), "--output_dir", str(tmp_path / "out")])


def test_train_py_refuses_a_bad_argument_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        command_line_main(["--config", str(write_config(tmp_path, optimizer="sgd")), "--output_dir", str(tmp_path / "o")])
    assert exit_.value.code == 2 and "train.py: optimizer must be adam or adamw" in capsys.readouterr().err
