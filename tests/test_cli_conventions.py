"""The conventions every `tireid` command follows: both spellings of every multi-word flag, and every
refusal one line `tireid <command>: <message>` on stderr with exit status 2 (argparse's errors too)."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from tireid_hf.cli import build_parser, main
from tireid_hf.errors import TIReIDError, TIReIDInputError
from tireid_hf.loading import load_model_and_processor

SRC = Path(__file__).resolve().parents[1] / "src"


def leaf_parsers(parser: argparse.ArgumentParser, path: tuple = ()) -> dict[tuple, argparse.ArgumentParser]:
    """Every runnable subcommand's parser, by its words after `tireid` (e.g. ("index", "build"))."""
    leaves = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                leaves.update(leaf_parsers(child, (*path, name)))
    return leaves or {path: parser}


LEAVES = leaf_parsers(build_parser())


def test_every_subcommand_is_walked():
    assert {" ".join(path) for path in LEAVES} == {
        "data prepare", "data push", "data export-synthetic", "evaluate", "visualize", "index build", "export onnx",
        "search", "push", "push-metric", "push-space", "convert irra", "convert openai-clip", "cards", "pretrain-base"}


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_every_multi_word_flag_takes_both_spellings(path):
    for action in LEAVES[path]._actions:
        for option in action.option_strings:
            body = option[2:]
            if option.startswith("--") and ("-" in body or "_" in body):
                twin = "--" + (body.replace("-", "_") if "-" in body else body.replace("_", "-"))
                assert twin in action.option_strings, f"tireid {' '.join(path)}: {option} without {twin}"


def test_both_spellings_set_the_same_value():
    parser = build_parser()
    for spelling in ("--batch-size", "--batch_size"):
        args = parser.parse_args(["search", "--model", "m", "--images", "d", spelling, "7"])
        assert args.batch_size == 7
    for spelling in ("--dry-run", "--dry_run", "--dry"):  # an abbreviation of both spellings is no ambiguity
        assert parser.parse_args(["push-space", spelling, "out"]).dry_run == "out"


def refused(capsys, argv: list[str]) -> str:
    """The line `tireid ARGV` refused with, checked to be one line, printed last on stderr, exit status 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    line = str(exit_info.value)
    assert exit_info.value.code == 2 and "\n" not in line
    assert capsys.readouterr().err.endswith(line + "\n")
    return line


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_argparse_errors_are_one_line_with_the_command_prefix(capsys, path):
    line = refused(capsys, [*path, "--no-such-flag"])
    assert line.startswith(f"tireid {' '.join(path)}: ")
    assert "--no-such-flag" in line or "required" in line


def bad_inputs(tmp: Path) -> dict[tuple, tuple[list[str], str]]:
    """A refusal of our own code for every subcommand: its arguments and what the message names."""
    taken = tmp / "taken"
    taken.mkdir(exist_ok=True)
    missing_model = str(tmp / "never" / "trained")
    return {
        ("data", "prepare"): (["--dataset", "synthetic", "--out", str(taken)], f"{taken} already exists"),
        ("data", "push"): (["--data", str(tmp), "--repo", "a/b/c"], "--repo 'a/b/c' is not a valid Hub repo id"),
        ("data", "export-synthetic"): (["--out", str(tmp / "raw"), "--option", "bogus=1"], "bogus"),
        ("evaluate",): (["--model", missing_model, "--dataset", "synthetic"], "no such folder"),
        ("visualize",): (["--model", missing_model, "--dataset", "synthetic"], "no such folder"),
        ("index", "build"): (["--model", missing_model, "--dataset", "synthetic", "--out", str(tmp / "i")], "no such folder"),
        ("export", "onnx"): (["--model", missing_model, "--out", str(tmp / "onnx")], "no such folder"),
        ("search",): (["--model", missing_model, "--images", str(tmp), "--k", "0"], "argument --k: must be >= 1, got 0"),
        ("push",): (["--model", missing_model, "--repo", "a/b/c"], "--repo 'a/b/c' is not a valid Hub repo id"),
        ("push-metric",): ([], "--repo org/name is required unless --dry-run OUT is given"),
        ("push-space",): ([], "--repo org/name is required unless --dry-run OUT is given"),
        ("convert", "irra"): ([str(tmp / "best.pth"), "--out", str(tmp / "c")], "best.pth: no such checkpoint file"),
        ("convert", "openai-clip"): ([str(tmp / "ViT.pt"), "--out", str(tmp / "c")], "ViT.pt: no such checkpoint file"),
        ("cards",): (["--configs", str(tmp / "none"), "--out", str(tmp / "cards")], "is missing"),
        ("pretrain-base",): (["--out", str(taken)], f"{taken} already exists"),
    }


def test_a_bad_input_to_every_subcommand_is_one_line_with_the_command_prefix(capsys, tmp_path):
    cases = bad_inputs(tmp_path)
    assert set(cases) == set(LEAVES)
    for path, (arguments, named) in cases.items():
        line = refused(capsys, [*path, *arguments])
        assert line.startswith(f"tireid {' '.join(path)}: ") and named in line, line
    assert sorted(path.name for path in tmp_path.iterdir()) == ["taken"]  # nothing written by a refused command


def test_a_refusal_from_the_console_script_exits_2_with_one_line_and_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tireid_hf.cli", "search", "--model", str(tmp_path), "--images",
                             str(tmp_path), "--k", "0"], capture_output=True, text=True, cwd=tmp_path,
                            env={"PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", "PATH": ""})
    assert (result.returncode, result.stdout, result.stderr) == (2, "", "tireid search: argument --k: must be >= 1, got 0\n")


def test_an_unexpected_exception_keeps_its_traceback(monkeypatch, tmp_path):
    from tireid_hf.cli import search

    def broken(args):
        raise RuntimeError("a bug, not a refusal")

    monkeypatch.setattr(search, "run_search", broken)
    with pytest.raises(RuntimeError, match="a bug, not a refusal"):
        main(["search", "--model", str(tmp_path), "--images", str(tmp_path)])


def test_push_space_dry_run_replaces_its_folder_only_with_overwrite(capsys, tmp_path):
    out = tmp_path / "space"
    out.mkdir()
    (out / "old.txt").write_text("old")
    line = refused(capsys, ["push-space", "--model", "org/x", "--dry-run", str(out)])
    assert line.startswith("tireid push-space: ") and "already exists" in line and "--overwrite" in line
    assert main(["push-space", "--model", "org/x", "--dry-run", str(out), "--overwrite"]) == 0
    assert (out / "app.py").is_file() and not (out / "old.txt").exists()


def test_the_loader_raises_the_library_error_naming_the_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TIReIDInputError, match=r"^--model .*empty: no config.json") as error:
        load_model_and_processor(str(tmp_path / "empty"))
    assert isinstance(error.value, (TIReIDError, ValueError))
    with pytest.raises(TIReIDInputError, match=r"^--model .*/never: no such folder"):
        load_model_and_processor(str(tmp_path / "never"))
