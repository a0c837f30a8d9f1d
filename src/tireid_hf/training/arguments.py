"""Training arguments: dataclasses read by ``HfArgumentParser`` from a YAML config plus command-line
overrides. Names follow transformers' ``TrainingArguments`` where they mean the same thing."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import yaml
from transformers import HfArgumentParser

from ..data.samplers import identities_per_batch
from ..errors import TIReIDInputError
from ..modeling import METHODS
from ..ranges import NON_NEGATIVE, NON_NEGATIVE_INTEGER, POSITIVE, POSITIVE_INTEGER, NumberRange

SchedulerName = Literal["cosine", "linear", "constant", "multistep"]
SCHEDULERS = get_args(SchedulerName)


def _json_dict(value, name: str) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise TIReIDInputError(f"--{name} must be a JSON object, got {value!r}: {error}") from None
    if not isinstance(value, dict):
        raise TIReIDInputError(f"{name} must be a mapping, got {type(value).__name__}")
    return value


def check_fields(arguments, ranges: dict[str, NumberRange]) -> None:
    """Checks every field of the argument dataclass ``arguments`` (values from the command line, a YAML
    config or a direct construction): a ``bool`` field holds true or false, a ``str`` field a string
    (``None`` too where the field allows it), a field in ``ranges`` a number in its range. A bad value is
    a :class:`~tireid_hf.errors.TIReIDInputError` naming the field and what it takes."""
    hints = typing.get_type_hints(type(arguments))
    for item in dataclasses.fields(arguments):
        value, kind = getattr(arguments, item.name), hints[item.name]
        if item.name in ranges:
            ranges[item.name].check(item.name, value)
        elif kind is bool and not isinstance(value, bool):
            raise TIReIDInputError(f"{item.name} must be true or false, got {value!r}")
        elif kind in (str, str | None) and not (isinstance(value, str) or (value is None and kind is not str)):
            raise TIReIDInputError(f"{item.name} must be a string, got {value!r}")


@dataclass
class ModelArguments:
    method: str = field(default="clip_reid", metadata={"help": f"One of {sorted(METHODS)}."})
    clip_name_or_path: str | None = field(
        default=None,
        metadata={"help": "CLIP checkpoint to start from (Hub id or folder), e.g. openai/clip-vit-base-patch16. "
                          "None: random initialisation from model_config.clip_config."},
    )
    model_config: dict | str | None = field(
        default_factory=dict,
        metadata={"help": "Fields of the method's config class (YAML mapping, or JSON on the command line, merged "
                          "over the YAML's)."},
    )

    def __post_init__(self):
        check_fields(self, {})
        if self.method not in METHODS:
            raise TIReIDInputError(f"method: unknown method {self.method!r}; known: {sorted(METHODS)}")
        self.model_config = _json_dict(self.model_config or {}, "model_config")
        config_class = METHODS[self.method][0]
        known = {f.name for f in dataclasses.fields(config_class)}
        unknown = sorted(set(self.model_config) - known)
        if unknown:
            raise TIReIDInputError(f"model_config: {config_class.__name__} has no field(s) {unknown}")
        if self.clip_name_or_path and "clip_config" in self.model_config:
            raise TIReIDInputError(f"model_config: clip_config is read from clip_name_or_path "
                                   f"({self.clip_name_or_path}); give one of them")


@dataclass
class DataArguments:
    dataset: str = field(default="synthetic", metadata={
        "help": "cuhk-pedes, icfg-pedes, rstpreid (with --data_root), synthetic, a dataset folder (tireid data prepare "
                "/ save_to_disk / Parquet / photos with metadata.jsonl or metadata.csv) or a Hub dataset id."})
    data_root: str | None = field(default=None, metadata={"help": "Folder of the raw dataset (benchmarks only)."})
    column_mapping: dict | str | None = field(
        default_factory=dict, metadata={"help": "A dataset folder's or Hub dataset's column names as ZOO=YOURS pairs, "
                                                "e.g. caption=description,pid=person_id (a mapping in YAML)."})
    dataset_options: dict | str | None = field(
        default_factory=dict, metadata={"help": "Keyword options of load_tireid_dataset (JSON on the command line)."}
    )
    instances_per_identity: int = field(default=4, metadata={"help": "K of the P x K identity sampler."})
    image_augmentation: bool = field(default=True, metadata={"help": "Flip, pad+crop and random erasing in training."})

    def __post_init__(self):
        from ..data import DATASET_NAMES, parse_column_mapping
        from ..data.hf_datasets import OPTIONS as HF_DATASET_OPTIONS

        check_fields(self, {"instances_per_identity": POSITIVE_INTEGER})
        if self.dataset in DATASET_NAMES and self.dataset != "synthetic" and not self.data_root:
            raise TIReIDInputError(f"dataset {self.dataset!r} needs --data_root (the folder of its raw release)")
        if self.dataset not in DATASET_NAMES and self.data_root:
            raise TIReIDInputError(f"dataset {self.dataset!r}: --data_root applies to {', '.join(DATASET_NAMES[:-1])}; a "
                             "dataset folder or Hub dataset id is read from itself")
        self.column_mapping = parse_column_mapping(self.column_mapping or None, "column_mapping")
        hf_options = sorted(set(_json_dict(self.dataset_options or {}, "dataset_options")) - set(HF_DATASET_OPTIONS))
        if self.dataset not in DATASET_NAMES and hf_options:
            raise TIReIDInputError(f"dataset_options {hf_options} do not apply to {self.dataset}; a dataset folder or Hub "
                             f"dataset takes {', '.join(HF_DATASET_OPTIONS)}")
        if self.column_mapping and self.dataset in DATASET_NAMES:
            raise TIReIDInputError(f"column_mapping applies to dataset folders and Hub datasets, not to {self.dataset}")
        self.dataset_options = _json_dict(self.dataset_options or {}, "dataset_options")


# The numeric fields of TrainingArguments and their ranges (max_steps: <= 0 trains num_train_epochs).
TRAINING_RANGES = {
    "num_train_epochs": NON_NEGATIVE,
    "max_steps": NumberRange(integer=True),
    "per_device_train_batch_size": POSITIVE_INTEGER,
    "per_device_eval_batch_size": POSITIVE_INTEGER,
    "gradient_accumulation_steps": POSITIVE_INTEGER,
    "learning_rate": POSITIVE,
    "head_learning_rate_multiplier": POSITIVE,
    "weight_decay": NON_NEGATIVE,
    "adam_beta1": NumberRange(low=0, high=1, high_open=True),
    "adam_beta2": NumberRange(low=0, high=1, high_open=True),
    "adam_epsilon": POSITIVE,
    "bias_learning_rate_multiplier": POSITIVE,
    "warmup_epochs": NON_NEGATIVE,
    "warmup_start_factor": NumberRange(low=0, high=1),
    "lr_decay_factor": NumberRange(low=0, high=1, low_open=True),
    "max_grad_norm": NON_NEGATIVE,
    "seed": NumberRange(integer=True, low=0, high=2**32 - 1),
    "eval_epochs": POSITIVE,
    "threshold_fpr": NumberRange(low=0, high=1, low_open=True, high_open=True, kind="a false-positive rate"),
    "save_steps": POSITIVE_INTEGER,
    "save_total_limit": NON_NEGATIVE_INTEGER,
    "logging_steps": POSITIVE_INTEGER,
    "dataloader_num_workers": NON_NEGATIVE_INTEGER,
}

# Text-to-image validation metrics that can select the best model (keys of rank_metrics at ks 1, 5, 10).
VALIDATION_METRICS = ("R1", "R5", "R10", "mAP", "mINP")


@dataclass
class TrainingArguments:
    output_dir: str = field(default="out/run", metadata={"help": "Where the model, results and checkpoints go."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Allow an output_dir holding another run."})
    num_train_epochs: float = field(default=60, metadata={"help": "Epochs per training stage."})
    max_steps: int = field(default=-1, metadata={"help": "If > 0: optimizer steps per stage, overriding epochs."})
    per_device_train_batch_size: int = field(default=64, metadata={"help": "Samples per batch per process (P x K)."})
    per_device_eval_batch_size: int = field(default=128, metadata={"help": "Batch size of embedding at evaluation."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Batches per optimizer step."})
    learning_rate: float = field(default=1e-5, metadata={"help": "Learning rate of the CLIP backbone."})
    head_learning_rate_multiplier: float = field(default=5.0, metadata={"help": "New modules: learning_rate x this."})
    weight_decay: float = field(default=4e-5, metadata={"help": "Weight decay (not on biases, norms, embeddings' 1-d params)."})
    optimizer: Literal["adam", "adamw"] = field(default="adam", metadata={"help": "adam or adamw."})
    adam_beta1: float = field(default=0.9, metadata={"help": "Adam beta1."})
    adam_beta2: float = field(default=0.999, metadata={"help": "Adam beta2."})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "Adam epsilon (IRRA/SEN: 1e-3)."})
    bias_learning_rate_multiplier: float = field(
        default=1.0, metadata={"help": "Biases outside the head-multiplied modules: learning_rate x this (IRRA/SEN: 2)."})
    lr_scheduler_type: SchedulerName = field(default="cosine", metadata={"help": f"One of {SCHEDULERS}, after linear warm-up."})
    warmup_epochs: float = field(default=5, metadata={"help": "Linear warm-up length in epochs (per stage)."})
    warmup_start_factor: float = field(default=0.0, metadata={"help": "Warm-up starts at learning_rate x this (IRRA: 0.1)."})
    lr_milestones_epochs: list[float] = field(default_factory=list, metadata={"help": "multistep: epochs where lr x lr_decay_factor."})
    lr_decay_factor: float = field(default=0.1, metadata={"help": "multistep decay factor."})
    max_grad_norm: float = field(default=0.0, metadata={"help": "Gradient clipping norm (0: off)."})
    mixed_precision: Literal["no", "fp16", "bf16"] = field(default="no", metadata={"help": "no, fp16 or bf16 (through Accelerate)."})
    seed: int = field(default=42, metadata={"help": "Seed of initialisation, sampling and augmentation."})
    eval_epochs: float = field(default=1, metadata={"help": "Validate every N epochs (and at the end of each stage)."})
    # str, not a Literal: argparse's "invalid choice" usage error would replace the one-sentence error
    # that names the known metrics (tests/test_faults.py::test_unknown_metric_for_best_model_is_refused_...)
    metric_for_best_model: str = field(default="R1", metadata={"help": "Validation metric that selects the best model."})
    eval_i2t: bool = field(default=False, metadata={"help": "Also report image-to-text metrics."})
    threshold_fpr: float = field(default=1e-3, metadata={
        "help": "False-positive rate of same-person decisions at which the best model's score threshold is picked on "
                "validation (written to results.json, config.json's score_threshold and the model card)."})
    save_steps: int = field(default=500, metadata={"help": "Write a resumable checkpoint every N optimizer steps."})
    save_total_limit: int = field(default=2, metadata={"help": "Checkpoints kept (oldest deleted; 0: all kept)."})
    logging_steps: int = field(default=10, metadata={"help": "Log losses every N optimizer steps."})
    report_to: str = field(default="tensorboard", metadata={"help": "Accelerate tracker(s), comma-separated, or none."})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "latest, or a checkpoint folder."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "Worker processes per data loader."})
    dataloader_pin_memory: bool = field(
        default=True, metadata={"help": "Collate training batches into pinned memory (on a CUDA device only)."})
    dataloader_persistent_workers: bool = field(
        default=False, metadata={"help": "Keep the workers across the epochs of a stage (needs dataloader_num_workers > 0)."})

    def __post_init__(self):
        # the Literal fields are checked by argparse on the command line; values from a YAML file or a
        # direct construction are checked here
        check_fields(self, TRAINING_RANGES)
        if self.lr_scheduler_type not in SCHEDULERS:
            raise TIReIDInputError(f"lr_scheduler_type must be one of {SCHEDULERS}, got {self.lr_scheduler_type!r}")
        if self.optimizer not in ("adam", "adamw"):
            raise TIReIDInputError(f"optimizer must be adam or adamw, got {self.optimizer!r}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise TIReIDInputError(f"mixed_precision must be no, fp16 or bf16, got {self.mixed_precision!r}")
        if self.metric_for_best_model not in VALIDATION_METRICS:
            raise TIReIDInputError(f"metric_for_best_model must be one of {VALIDATION_METRICS}, got {self.metric_for_best_model!r}")
        if not isinstance(self.lr_milestones_epochs, list):
            raise TIReIDInputError(f"lr_milestones_epochs must be a list of epochs (numbers >= 0), got "
                                   f"{self.lr_milestones_epochs!r}")
        for position, epoch in enumerate(self.lr_milestones_epochs):
            NON_NEGATIVE.check(f"lr_milestones_epochs[{position}]", epoch)
        if self.dataloader_persistent_workers and self.dataloader_num_workers == 0:
            raise TIReIDInputError("dataloader_persistent_workers needs dataloader_num_workers > 0 (no workers to keep)")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise TIReIDInputError("set num_train_epochs > 0 or max_steps > 0")


ARGUMENT_CLASSES = (ModelArguments, DataArguments, TrainingArguments)


class _ArgumentParser(HfArgumentParser):
    """``HfArgumentParser`` whose errors (an unknown flag, a value that is not a number, a choice that is
    not offered) are a :class:`~tireid_hf.errors.TIReIDInputError` naming the argument, not a usage text
    and an exit."""

    def error(self, message: str):
        raise TIReIDInputError(message)
DATASET_BOUND_KEYS = ("data_root", "dataset_options", "column_mapping")  # meaningful for one dataset only


def parse_training_arguments(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    """``--config FILE.yaml`` (optional) then command-line overrides of any argument.

    Every YAML key must be an argument name: an unknown key is an error naming it (and the file).
    ``model_config`` / ``dataset_options`` given on the command line (JSON) are merged over the YAML's.
    The YAML's ``data_root``, ``dataset_options`` and ``column_mapping`` describe the YAML's dataset: a
    ``--dataset`` on the command line naming another one drops them (``--config configs/<m>_synthetic.yaml
    --dataset photos/`` trains on the folder with the config's model and schedule).
    """
    parser = _ArgumentParser(ARGUMENT_CLASSES)
    parser.add_argument("--config", type=str, default=None, help="YAML file of arguments (flat keys).")
    config_file = parser.parse_known_args(argv)[0].config
    from_yaml = {}
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise TIReIDInputError(f"--config: no such file {path}")
        try:
            with path.open(encoding="utf-8") as stream:  # a YAML error then names the file
                from_yaml = yaml.safe_load(stream) or {}
        except (UnicodeDecodeError, yaml.YAMLError) as error:
            raise TIReIDInputError(f"--config {path}: not a YAML file of arguments: {' '.join(str(error).split())}") from None
        if not isinstance(from_yaml, dict):
            raise TIReIDInputError(f"{path}: a config must be a mapping of argument names to values")
        known = {f.name for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls)}
        unknown = sorted(set(from_yaml) - known)
        if unknown:
            raise TIReIDInputError(f"{path}: unknown key(s) {unknown}; see `python train.py --help`")
    dataset_parser = argparse.ArgumentParser(add_help=False)
    dataset_parser.add_argument("--dataset")
    dataset = dataset_parser.parse_known_args(argv)[0].dataset
    if dataset is not None and dataset != from_yaml.get("dataset", DataArguments.dataset):
        from_yaml = {key: value for key, value in from_yaml.items() if key not in DATASET_BOUND_KEYS}
    parser.set_defaults(**{key: value for key, value in from_yaml.items() if key not in ("model_config", "dataset_options")})
    model_args, data_args, training_args, *_, unknown = parser.parse_args_into_dataclasses(argv, return_remaining_strings=True)
    if unknown:
        raise TIReIDInputError(f"unknown argument(s) {unknown}; see `python train.py --help`")
    for args, name in ((model_args, "model_config"), (data_args, "dataset_options")):
        merged = {**_json_dict(from_yaml.get(name) or {}, name), **getattr(args, name)}
        setattr(args, name, merged)
    model_args.__post_init__()
    identities_per_batch(training_args.per_device_train_batch_size, data_args.instances_per_identity)
    return model_args, data_args, training_args
