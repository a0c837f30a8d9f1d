"""Optimizer parameter groups and the per-step learning-rate schedule."""

from __future__ import annotations

import bisect
import math

import torch

from .arguments import TrainingArguments

def learning_rate_role(model: torch.nn.Module, name: str) -> str:
    """Role of parameter ``name`` as the method declares it (``TIReIDPreTrainedModel.learning_rate_roles``):
    ``"backbone"`` (its pretrained backbone modules), ``"heads"`` (new modules that take the head
    multiplier) or ``"new"`` (the other new modules, at the backbone's rate)."""
    return model.learning_rate_roles()[name]


def parameter_groups(model: torch.nn.Module, args: TrainingArguments) -> list[dict]:
    """Trainable parameters grouped as the IRRA family of reference code does.

    * rate: ``learning_rate`` for the backbone(s) and for new modules outside the model's
      ``head_multiplier_modules``, ``learning_rate x head_learning_rate_multiplier`` for the rest
      (:func:`learning_rate_role`); biases outside the multiplied modules at ``learning_rate x
      bias_learning_rate_multiplier`` (IRRA/SEN: 2);
    * weight decay only on matrices (none on biases, norm weights and other 1-d parameters).

    Groups are named ``<role>[_bias][_no_decay]``; frozen parameters (``requires_grad=False``) are left out."""
    groups: dict[tuple[str, bool, bool], list[torch.nn.Parameter]] = {}
    roles = model.learning_rate_roles()
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        role = roles[name]
        bias_rate = role != "heads" and name.endswith(".bias") and args.bias_learning_rate_multiplier != 1.0
        groups.setdefault((role, bias_rate, parameter.ndim >= 2), []).append(parameter)
    rates = {"backbone": 1.0, "new": 1.0, "heads": args.head_learning_rate_multiplier}
    return [
        {
            "params": params,
            "lr": args.learning_rate * (args.bias_learning_rate_multiplier if bias_rate else rates[role]),
            "weight_decay": args.weight_decay if decays else 0.0,
            "name": f"{role}{'_bias' if bias_rate else ''}{'' if decays else '_no_decay'}",
        }
        for (role, bias_rate, decays), params in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1], not item[0][2]))
    ]


def build_optimizer(model: torch.nn.Module, args: TrainingArguments) -> torch.optim.Optimizer:
    optimizer_class = torch.optim.AdamW if args.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(parameter_groups(model, args), betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon)


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, scheduler: str,
                  milestones: list[int] = (), decay_factor: float = 0.1, warmup_start: float = 0.0) -> float:
    """Multiplier of the base learning rates at optimizer step ``step`` (0-based):

    * warm-up: ``f + (1 - f) (step + 1) / warmup_steps`` for ``step < warmup_steps``, ``f = warmup_start``
      (IRRA: 0.1; 0 ramps from nothing);
    * then, with ``p = (step - warmup) / (total - warmup)`` in [0, 1):
      cosine ``0.5 (1 + cos(pi p))``, linear ``1 - p``, constant ``1``,
      multistep ``decay_factor ** (milestones passed)`` (milestones in steps).
    """
    if step < warmup_steps:
        return warmup_start + (1.0 - warmup_start) * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if scheduler == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    if scheduler == "linear":
        return max(0.0, 1.0 - progress)
    if scheduler == "multistep":
        return decay_factor ** bisect.bisect_right(sorted(milestones), step)
    return 1.0


def build_scheduler(optimizer, args: TrainingArguments, total_steps: int, steps_per_epoch: int):
    """A per-step ``LambdaLR`` of :func:`lr_multiplier`, epochs converted to steps (warm-up
    ``min(total_steps, round(warmup_epochs x steps_per_epoch))``, milestones ``round(epoch x steps_per_epoch)``):
    every rate is ``base rate x multiplier``, computed from the step alone.

    The schedule's state is its step counter (saved in the checkpoint's ``progress.json``): a run resumed
    with another budget goes on from that step on the new budget's curve (tests/test_lr_schedule.py)."""
    warmup_steps = min(total_steps, round(args.warmup_epochs * steps_per_epoch))
    milestones = [round(epoch * steps_per_epoch) for epoch in args.lr_milestones_epochs]
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_multiplier(step, total_steps, warmup_steps, args.lr_scheduler_type, milestones, args.lr_decay_factor,
                                   args.warmup_start_factor),
    )
