"""Optimizer parameter groups and the per-step learning-rate schedule."""

from __future__ import annotations

import bisect
import math

import torch

from .arguments import TrainingArguments

BACKBONE_PREFIX = "clip."


def parameter_groups(model: torch.nn.Module, args: TrainingArguments) -> list[dict]:
    """Trainable parameters in four groups, as the IRRA family of reference code does:
    backbone (``clip.*``) at ``learning_rate``, new modules at ``learning_rate x
    head_learning_rate_multiplier``; weight decay only on matrices (no decay on biases, norm
    weights and other 1-d parameters). Frozen parameters (``requires_grad=False``) are left out."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        key = (name.startswith(BACKBONE_PREFIX), parameter.ndim >= 2)
        groups.setdefault(key, []).append(parameter)
    return [
        {
            "params": params,
            "lr": args.learning_rate * (1.0 if is_backbone else args.head_learning_rate_multiplier),
            "weight_decay": args.weight_decay if decays else 0.0,
            "name": f"{'backbone' if is_backbone else 'heads'}{'' if decays else '_no_decay'}",
        }
        for (is_backbone, decays), params in sorted(groups.items(), reverse=True)
    ]


def build_optimizer(model: torch.nn.Module, args: TrainingArguments) -> torch.optim.Optimizer:
    optimizer_class = torch.optim.AdamW if args.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(parameter_groups(model, args), betas=(args.adam_beta1, args.adam_beta2))


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, scheduler: str,
                  milestones: list[int] = (), decay_factor: float = 0.1) -> float:
    """Multiplier of the base learning rates at optimizer step ``step`` (0-based):

    * warm-up: ``(step + 1) / warmup_steps`` for ``step < warmup_steps``;
    * then, with ``p = (step - warmup) / (total - warmup)`` in [0, 1):
      cosine ``0.5 (1 + cos(pi p))``, linear ``1 - p``, constant ``1``,
      multistep ``decay_factor ** (milestones passed)`` (milestones in steps).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if scheduler == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    if scheduler == "linear":
        return max(0.0, 1.0 - progress)
    if scheduler == "multistep":
        return decay_factor ** bisect.bisect_right(sorted(milestones), step)
    return 1.0


def build_scheduler(optimizer, args: TrainingArguments, total_steps: int, steps_per_epoch: int):
    """A per-step ``LambdaLR`` of :func:`lr_multiplier` with epochs converted to steps."""
    warmup_steps = min(total_steps, round(args.warmup_epochs * steps_per_epoch))
    milestones = [round(epoch * steps_per_epoch) for epoch in args.lr_milestones_epochs]
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_multiplier(step, total_steps, warmup_steps, args.lr_scheduler_type, milestones, args.lr_decay_factor),
    )
