"""Training with Accelerate: argument dataclasses, optimizer/scheduler, and the one training loop."""

from .arguments import DataArguments, ModelArguments, TrainingArguments, parse_training_arguments

__all__ = ["DataArguments", "ModelArguments", "TrainingArguments", "parse_training_arguments"]
