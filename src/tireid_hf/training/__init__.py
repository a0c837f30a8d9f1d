"""Training with Accelerate: argument dataclasses, optimizer/scheduler, and the one training loop."""

from __future__ import annotations

from .arguments import DataArguments, ModelArguments, TrainingArguments, parse_training_arguments


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``train.py`` (callable from tests with an argument list)."""
    from .loop import train

    train(*parse_training_arguments(argv))
    return 0


__all__ = ["DataArguments", "ModelArguments", "TrainingArguments", "main", "parse_training_arguments"]
