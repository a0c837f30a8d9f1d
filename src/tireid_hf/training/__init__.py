"""Training with Accelerate: argument dataclasses, optimizer/scheduler, and the one training loop."""

from __future__ import annotations

import os

from .arguments import DataArguments, ModelArguments, TrainingArguments, parse_training_arguments


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``train.py`` (callable from tests with an argument list)."""
    from .loop import train

    train(*parse_training_arguments(argv))
    return 0


def command_line_main(argv: list[str] | None = None) -> int:
    """:func:`main` for ``train.py``: a mistake of the user (an argument, a config, the dataset, the
    output folder, a checkpoint) ends the process with one sentence on stderr, printed by rank 0 only,
    instead of a traceback per process."""
    from ..data import DatasetFormatError
    from .checkpoints import CheckpointError

    try:
        arguments = parse_training_arguments(argv)
    except (OSError, ValueError) as error:
        raise SystemExit(f"train.py: {error}") from None
    from .loop import train

    try:
        train(*arguments)
    except (DatasetFormatError, CheckpointError, FileExistsError, FileNotFoundError, NotADirectoryError) as error:
        raise SystemExit(f"train.py: {error}" if int(os.environ.get("RANK", "0")) == 0 else 1) from None
    return 0


__all__ = ["DataArguments", "ModelArguments", "TrainingArguments", "command_line_main", "main", "parse_training_arguments"]
