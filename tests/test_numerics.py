"""Numbers at the boundary: every numeric argument of train.py and tireid is checked where it is read
(a one-line refusal naming it and what it takes), and a loss that stops being a number stops training
at that step with the folders written before left byte for byte as they were."""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
import re
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import given
from hypothesis import strategies as st

from test_training_run import CONFIG
from tireid_hf.cli import build_parser
from tireid_hf.cli import main as cli_main
from tireid_hf.data.samplers import IdentityBatchSampler
from tireid_hf.errors import TIReIDInputError
from tireid_hf.modeling.modeling_clip_reid import ClipReIDModel
from tireid_hf.ranges import NumberRange
from tireid_hf.training import command_line_main
from tireid_hf.training import main as train_main
from tireid_hf.training.arguments import (TRAINING_RANGES, DataArguments, ModelArguments, TrainingArguments,
                                          parse_training_arguments)
from tireid_hf.training.loop import build_model
from tireid_hf.training.numerics import NonFiniteLossError, check_finite_loss

NAN, INF = float("nan"), float("inf")
# Out-of-range values of every numeric field of TrainingArguments; NaN, an infinity, a boolean and a
# string are tried on every field besides.
OUT_OF_RANGE = {
    "num_train_epochs": [-1, -0.5],
    "max_steps": [2.5],
    "per_device_train_batch_size": [0, -8, 4.0],
    "per_device_eval_batch_size": [0, -1],
    "gradient_accumulation_steps": [0, -2],
    "learning_rate": [-0.001, 0, -1e-9],
    "head_learning_rate_multiplier": [0, -5],
    "weight_decay": [-1e-4],
    "adam_beta1": [-0.1, 1, 1.5],
    "adam_beta2": [-0.1, 1],
    "adam_epsilon": [0, -1e-8],
    "bias_learning_rate_multiplier": [0, -2],
    "warmup_epochs": [-1],
    "warmup_start_factor": [-0.1, 1.5],
    "lr_decay_factor": [0, -0.1, 10],
    "max_grad_norm": [-1],
    "seed": [-1, 2**32, 1.5],
    "eval_epochs": [0, -1],
    "threshold_fpr": [0, 1, -0.1],
    "save_steps": [0, -500],
    "save_total_limit": [-1],
    "logging_steps": [0, -10],
    "dataloader_num_workers": [-1],
}
# The smallest values each field takes (edges of its range).
EDGES = {"num_train_epochs": 0, "max_steps": 0, "weight_decay": 0, "adam_beta1": 0, "adam_beta2": 0.0,
         "warmup_epochs": 0, "warmup_start_factor": 1, "lr_decay_factor": 1, "max_grad_norm": 0, "seed": 2**32 - 1,
         "save_total_limit": 0, "dataloader_num_workers": 0, "learning_rate": 1e-300, "save_steps": 1}


def numeric_fields(cls) -> set[str]:
    hints = typing.get_type_hints(cls)
    return {item.name for item in dataclasses.fields(cls) if hints[item.name] in (int, float)}


def test_every_numeric_field_has_a_range_and_a_bad_value_in_the_table():
    assert set(TRAINING_RANGES) == numeric_fields(TrainingArguments) == set(OUT_OF_RANGE)


@pytest.mark.parametrize("name", sorted(OUT_OF_RANGE))
def test_a_bad_value_of_every_numeric_field_is_refused_naming_it(name):
    for value in [*OUT_OF_RANGE[name], NAN, INF, -INF, True, "3", None]:
        with pytest.raises(TIReIDInputError, match=rf"^{name} must be (an integer|a finite number|a false-positive rate|"
                                                   rf">|>=|in)[ ,].*got {re.escape(repr(value))}$"):
            TrainingArguments(**{name: value})
    if name in EDGES:
        assert getattr(TrainingArguments(**{"max_steps": 5, name: EDGES[name]}), name) == EDGES[name]


@pytest.mark.parametrize("argv, message", [
    (["--learning_rate", "-0.001"], r"^learning_rate must be > 0, got -0.001$"),
    (["--learning_rate", "nan"], r"^learning_rate must be a finite number > 0, got nan$"),
    (["--num_train_epochs", "nan", "--max_steps", "5"], r"^num_train_epochs must be a finite number >= 0, got nan$"),
    (["--num_train_epochs", "0"], r"^set num_train_epochs > 0 or max_steps > 0$"),
    (["--save_steps", "0"], r"^save_steps must be >= 1, got 0$"),
    (["--logging_steps", "0"], r"^logging_steps must be >= 1, got 0$"),
    (["--dataloader_num_workers", "-1"], r"^dataloader_num_workers must be >= 0, got -1$"),
    (["--per_device_train_batch_size", "6"],
     r"^per_device_train_batch_size \(6\) must be a positive multiple of instances_per_identity \(4"),
    (["--instances_per_identity", "0"], r"^instances_per_identity must be >= 1, got 0$"),
    (["--learning_rate", "fast"], r"^argument --learning_rate/--learning-rate: invalid float value: 'fast'$"),
    (["--lr_milestones_epochs", "2", "inf"], r"^lr_milestones_epochs\[1\] must be a finite number >= 0, got inf$"),
    (["--optimizer", "sgd"], r"^argument --optimizer: invalid choice: 'sgd' \(choose from 'adam', 'adamw'\)$"),
    (["--learnin_rate", "0.1"], r"^unknown argument\(s\) \['--learnin_rate', '0.1'\]"),
    (["--clip_name_or_path", "base", "--model_config", '{"clip_config": {}}'],
     r"^model_config: clip_config is read from clip_name_or_path \(base\); give one of them$"),
])
def test_train_py_arguments_are_refused_at_parse_time(argv, message):
    with pytest.raises(TIReIDInputError, match=message):
        parse_training_arguments(argv)


@pytest.mark.parametrize("content, message", [
    ("eval_i2t: 3\n", r"^eval_i2t must be true or false, got 3$"),
    ("output_dir: 5\n", r"^output_dir must be a string, got 5$"),
    ("lr_milestones_epochs: 5\n", r"^lr_milestones_epochs must be a list of epochs \(numbers >= 0\), got 5$"),
    ("learning_rate: .nan\n", r"^learning_rate must be a finite number > 0, got nan$"),
    ("per_device_train_batch_size: 2.5\n", r"^per_device_train_batch_size must be an integer >= 1, got 2.5$"),
    ("instances_per_identity: true\n", r"^instances_per_identity must be an integer >= 1, got True$"),
    ("learning_rate: [1\n", r"^--config .*bad.yaml: not a YAML file of arguments: .*line 2"),
])
def test_config_values_of_the_wrong_type_are_refused_naming_the_key(tmp_path, content, message):
    (tmp_path / "bad.yaml").write_text(content)
    with pytest.raises(TIReIDInputError, match=message):
        parse_training_arguments(["--config", str(tmp_path / "bad.yaml")])


NUMERIC_FIELDS = sorted(numeric_fields(TrainingArguments) | numeric_fields(DataArguments))
NUMBERS = st.one_of(st.integers(-(2**40), 2**40), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(["nan", "-inf", "1e400", "0x10", "", "1_000"]))


@given(st.dictionaries(st.sampled_from(NUMERIC_FIELDS), NUMBERS, min_size=1, max_size=3))
def test_random_numbers_are_accepted_or_refused_naming_an_argument(values):
    argv = [part for name, value in values.items() for part in (f"--{name}", str(value))]
    try:
        _, data_args, args = parse_training_arguments(argv)
    except TIReIDInputError as error:
        assert any(name in str(error) for name in values) or str(error) == "set num_train_epochs > 0 or max_steps > 0"
        return
    for name in values:
        value = getattr(args if hasattr(args, name) else data_args, name)
        assert not isinstance(value, bool) and math.isfinite(value)
    assert args.learning_rate > 0 and args.per_device_train_batch_size % data_args.instances_per_identity == 0


def test_an_image_size_off_the_patch_grid_is_refused_naming_it_and_the_patch():
    model_args = ModelArguments(model_config={**CONFIG["model_config"], "image_size": [60, 32]})
    with pytest.raises(TIReIDInputError, match=r"^model_config: image_size must be .*multiples of the patch size 16; "
                                               r"got \(60, 32\)$"):
        build_model(model_args, num_ids=3)


def test_too_few_identities_for_a_batch_says_what_to_lower_the_batch_to():
    with pytest.raises(TIReIDInputError, match=r"^a batch needs 16 distinct identities \(per_device_train_batch_size 32 "
                                               r"/ instances_per_identity 2\) but the training data has 8: lower "
                                               r"--per_device_train_batch_size to 16 or below"):
        IdentityBatchSampler([pid for pid in range(8) for _ in range(3)], batch_size=32, instances_per_identity=2)


# --- tireid's flags -------------------------------------------------------------------------------------------

def leaf_parsers(parser=None, path=()):
    parser = parser or build_parser()
    subcommands = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not subcommands:
        yield path, parser
    for action in subcommands:
        for name, child in action.choices.items():
            yield from leaf_parsers(child, (*path, name))


def test_no_flag_of_tireid_reads_a_bare_int_or_float():
    bare = [(path, action.dest) for path, parser in leaf_parsers() for action in parser._actions
            if action.type in (int, float)]
    assert bare == []


@pytest.mark.parametrize("argv, line", [
    (["search", "--model", "m", "--images", "i", "--k", "0"], "tireid search: argument --k: must be >= 1, got 0"),
    (["search", "--model", "m", "--images", "i", "--batch-size", "-3"],
     "tireid search: argument --batch-size/--batch_size: must be >= 1, got -3"),
    (["search", "--model", "m", "--images", "i", "--min-score", "nan"],
     "tireid search: argument --min-score/--min_score: expected a finite number, 'model', 'none' or 'auto', got 'nan'"),
    (["evaluate", "--model", "m", "--dataset", "synthetic", "--rerank-k", "0"],
     "tireid evaluate: argument --rerank-k/--rerank_k: must be >= 1, got 0"),
    (["evaluate", "--model", "m", "--dataset", "synthetic", "--batch-size", "many"],
     "tireid evaluate: argument --batch-size/--batch_size: must be an integer >= 1, got 'many'"),
    (["visualize", "--model", "m", "--dataset", "synthetic", "--num-queries", "0"],
     "tireid visualize: argument --num-queries/--num_queries: must be >= 1, got 0"),
    (["visualize", "--model", "m", "--dataset", "synthetic", "--seed", "-1"],
     "tireid visualize: argument --seed: must be >= 0, got -1"),
    (["visualize", "--model", "m", "--dataset", "synthetic", "--query-index", "-1"],
     "tireid visualize: argument --query-index/--query_index: must be >= 0, got -1"),
    (["index", "build", "--model", "m", "--dataset", "synthetic", "--out", "o", "--rescore", "-5"],
     "tireid index build: argument --rescore: must be >= 0, got -5"),
    (["data", "prepare", "--dataset", "synthetic", "--out", "o", "--max-rows-per-shard", "0"],
     "tireid data prepare: argument --max-rows-per-shard/--max_rows_per_shard: must be >= 1, got 0"),
    (["convert", "irra", "c.pth", "--out", "o", "--image-size", "384", "0"],
     "tireid convert irra: argument --image-size/--image_size: must be >= 1, got 0"),
    (["evaluate", "--model", "m", "--dataset", "synthetic", "--device", "gpu"],
     "tireid evaluate: argument --device: 'gpu': not a device of this machine; expected one of cpu"),
])
def test_a_bad_number_or_device_for_tireid_is_one_line_naming_the_flag(capsys, tmp_path, monkeypatch, argv, line):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(argv)
    assert exit_info.value.code == 2 and capsys.readouterr().err == line + "\n"
    assert list(tmp_path.iterdir()) == []


def test_cuda_without_cuda_is_refused_naming_device(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for device in ("cuda", "cuda:0"):
        with pytest.raises(SystemExit):
            cli_main(["search", "--model", "m", "--images", "i", "--device", device])
        assert capsys.readouterr().err == (f"tireid search: argument --device: '{device}': CUDA is not available here "
                                           "(torch.cuda.is_available() is False); expected one of cpu\n")


def test_a_number_range_as_an_argparse_type_reads_and_checks():
    half_open = NumberRange(low=0, high=1, high_open=True)
    assert half_open("0") == 0.0 and half_open("0.5") == 0.5
    for text in ("1", "-0.1", "nan", "inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"must be (a finite number )?in \[0, 1\), got"):
            half_open(text)


# --- a loss that stops being a number -----------------------------------------------------------------------

def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_nan_loss_term_stops_training_at_that_step_leaving_checkpoint_and_best_as_they_were(tmp_path, monkeypatch):
    out = tmp_path / "out"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**CONFIG, "save_steps": 2, "eval_epochs": 0.5}))
    forward, calls, seen = ClipReIDModel.forward, [], {}

    def forward_nan_at_step_5(self, *args, **kwargs):
        outputs = forward(self, *args, **kwargs)
        if self.training:
            calls.append(1)
            if len(calls) == 5:  # step 5: checkpoints (steps 2, 4) and a best model (step 3) are on disk
                seen.update(folder_bytes(out))
                outputs.losses["id"] = torch.tensor(float("nan"))
        return outputs

    monkeypatch.setattr(ClipReIDModel, "forward", forward_nan_at_step_5)
    with pytest.raises(NonFiniteLossError, match=r"^training stopped at step 5 \(step 5 of stage 'main'\): loss term\(s\) "
                                                 r"id became NaN or infinite; .*Try: lower --learning_rate \(now 0.001\)"):
        train_main(["--config", str(tmp_path / "config.yaml"), "--output_dir", str(out), "--max_steps", "12"])
    assert any(name.startswith("checkpoints/") for name in seen) and any(name.startswith("best/") for name in seen)
    assert folder_bytes(out) == seen


def test_learning_rate_1e6_stops_train_py_in_one_line_with_exit_2(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    with pytest.raises(SystemExit) as exit_info:
        command_line_main(["--config", str(tmp_path / "config.yaml"), "--output_dir", str(tmp_path / "out"),
                           "--learning_rate", "1e6", "--warmup_epochs", "0", "--max_steps", "12"])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and error.count("\n") == 1 and "Traceback" not in error
    assert "train.py: training stopped at step " in error and "became NaN or infinite" in error
    assert "lower --learning_rate (now 1e+06); clip gradients with --max_grad_norm" in error
    assert not (tmp_path / "out" / "checkpoints").exists() and not (tmp_path / "out" / "best").exists()


class _World:
    """An Accelerator of ``ranks`` processes as gather sees it: this rank's flags and the others'."""

    def __init__(self, others):
        self.others = others

    def gather(self, tensor):
        return torch.cat([tensor, *self.others])


def test_every_process_stops_when_one_process_loss_is_not_finite():
    outputs = type("Outputs", (), {"loss": torch.tensor(1.0), "losses": {"sdm": torch.tensor(0.5), "id": torch.tensor(0.5)}})
    args = TrainingArguments(mixed_precision="bf16", max_grad_norm=1.0)
    check_finite_loss(outputs, _World([torch.tensor([[True, True, True]])]), args, step=3, stage="main", stage_step=3)
    with pytest.raises(NonFiniteLossError, match=r"loss term\(s\) loss, sdm became NaN or infinite.* Try: lower "
                                                 r"--learning_rate \(now 1e-05\); train without mixed precision "
                                                 r"\(--mixed_precision no; now bf16\)$"):
        check_finite_loss(outputs, _World([torch.tensor([[True, True, True]]), torch.tensor([[False, False, True]])]),
                          args, step=3, stage="main", stage_step=3)
