"""Arguments several ``tireid`` commands share, each declared once, and the argument types."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from ..data import DATASET_NAMES, parse_column_mapping
from ..ranges import FINITE, POSITIVE_INTEGER

SAVED_MODEL_HELP = "directory (or Hub id) of a saved tireid model and processor"


def add_model(parser: argparse.ArgumentParser, help: str = SAVED_MODEL_HELP, required: bool = True) -> None:
    """``--model``: a saved model folder or Hub id (:func:`tireid_hf.loading.load_model_and_processor`)."""
    parser.add_argument("--model", required=required, default=None, help=help)


def add_overwrite(parser: argparse.ArgumentParser, target: str = "--out") -> None:
    """``--overwrite``: the command may replace the folder ``target`` names."""
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace {target} if it exists (the old folder goes once the new one is complete)")


def add_token(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token", help="Hub token (default: the logged-in one)")


def add_dry_run(parser: argparse.ArgumentParser, what: str) -> None:
    """``--dry-run OUT`` (write ``what`` to OUT and upload nothing) and its ``--overwrite``."""
    parser.add_argument("--dry-run", metavar="OUT", default=None, help=f"write {what} to OUT and upload nothing")
    add_overwrite(parser, "OUT (--dry-run)")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=device_argument, default=None,
                        help="torch device: cpu, cuda, cuda:N or mps, one this machine has (default: cuda if available, "
                        "else cpu)")


def add_batch_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=POSITIVE_INTEGER, default=64,
                        help="images or texts embedded at once (default: 64)")


def add_options(parser: argparse.ArgumentParser) -> None:
    """``--option KEY=VALUE``, repeatable: ``args.option`` is a list of ``(key, value parsed as YAML)``."""
    parser.add_argument("--option", type=option_argument, action="append", default=[], metavar="KEY=VALUE",
                        help="dataset option, repeatable (e.g. num_train_ids=500, seed=1, validation_ids=0.1)")


def add_dataset_split(parser: argparse.ArgumentParser, what: str) -> None:
    """Where ``what`` is read from: ``--dataset`` (a name, a dataset folder or a Hub dataset id),
    ``--column-mapping``, ``--root``, ``--split`` and ``--option``."""
    parser.add_argument("--dataset", required=True,
                        help=f"where {what} is read from: {', '.join(DATASET_NAMES)} (with --root), a folder (tireid "
                        "data prepare / save_to_disk / Parquet / photos with metadata.jsonl or metadata.csv) or a "
                        "Hub dataset id")
    parser.add_argument("--column-mapping", type=column_mapping_argument, default=None, metavar="ZOO=YOURS,...",
                        help="a folder's or Hub dataset's column names, e.g. caption=description,pid=person_id")
    parser.add_argument("--root", "--data-root", dest="root", default=None, help="dataset root directory")
    parser.add_argument("--split", default="test", help=f"the split of --dataset that holds {what} (default: test)")
    add_options(parser)


def option_argument(value: str) -> tuple:
    """``KEY=VALUE`` as ``(key, value parsed as YAML)``."""
    key, sep, text = value.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return key.strip(), yaml.safe_load(text)


def column_mapping_argument(value: str) -> dict:
    try:
        return parse_column_mapping(value, "--column-mapping")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def min_score_argument(value: str):
    """``--min-score``: ``auto``, ``model``, ``none`` or a finite number."""
    if value in ("auto", "model", "none"):
        return value
    try:
        return FINITE(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a finite number, 'model', 'none' or 'auto', got {value!r}") from None


def device_argument(value: str) -> str:
    """``--device``: a torch device this machine has: ``cpu``, ``cuda`` / ``cuda:N`` (N below
    ``torch.cuda.device_count()``) where ``torch.cuda.is_available()``, ``mps`` where
    ``torch.backends.mps.is_available()``; anything else names the devices there are."""
    import torch

    available = ["cpu"]
    if torch.cuda.is_available():
        available += ["cuda", *(f"cuda:{index}" for index in range(torch.cuda.device_count()))]
    if torch.backends.mps.is_available():
        available.append("mps")
    if value not in available:
        cause = ("CUDA is not available here (torch.cuda.is_available() is False)"
                 if value.startswith("cuda") and not torch.cuda.is_available() else "not a device of this machine")
        raise argparse.ArgumentTypeError(f"{value!r}: {cause}; expected one of {', '.join(available)}")
    return value


def default_output(model: str, name: str) -> Path:
    """``name`` inside the model's folder, or in the current folder for a Hub id."""
    return (Path(model) if Path(model).is_dir() else Path(".")) / name


def file_label(dataset: str) -> str:
    """``--dataset`` as part of a file name: a folder's name, a Hub id's ``/`` as ``--``."""
    return Path(dataset).name if Path(dataset).is_dir() else dataset.replace("/", "--")
