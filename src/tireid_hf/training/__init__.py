"""Training with Accelerate: argument dataclasses, optimizer/scheduler, and the one training loop."""

from __future__ import annotations

import os

import yaml

from ..errors import refused_as_one_line, refusing
from .arguments import DataArguments, ModelArguments, TrainingArguments, parse_training_arguments


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``train.py`` (callable from tests with an argument list)."""
    from .loop import train

    train(*parse_training_arguments(argv))
    return 0


def command_line_main(argv: list[str] | None = None) -> int:
    """:func:`main` for ``train.py``: a mistake of the user (an argument, a config, the dataset, the
    output folder, a checkpoint: any :class:`~tireid_hf.errors.TIReIDError`) or an ``OSError`` (a full
    disk, a read-only output) ends the process with one line ``train.py: ...`` on stderr (printed by
    rank 0 only) and exit status 2 instead of a traceback per process; any other exception keeps its
    traceback."""
    from .loop import train

    with refused_as_one_line("train.py", speak=int(os.environ.get("RANK", "0")) == 0):
        with refusing(ValueError, yaml.YAMLError):  # the argument dataclasses' and the config file's checks
            arguments = parse_training_arguments(argv)
        train(*arguments)
    return 0


__all__ = ["DataArguments", "ModelArguments", "TrainingArguments", "command_line_main", "main", "parse_training_arguments"]
