"""A training run stops cleanly when its loss is no longer a number."""

from __future__ import annotations

import torch

from ..errors import TIReIDInputError


class NonFiniteLossError(TIReIDInputError):
    """The loss, or one of its terms, became NaN or infinite: training stopped before that step's
    optimizer step, so nothing of the step reached the weights, a checkpoint or the best model."""


def check_finite_loss(outputs, accelerator, args, *, step: int, stage: str, stage_step: int) -> None:
    """Raises :class:`NonFiniteLossError` when ``outputs.loss`` or a term of ``outputs.losses`` is NaN or
    infinite on any process, naming optimizer step ``step`` (the step this forward pass belongs to; step
    ``stage_step`` of ``stage``), every non-finite term and what to try.

    One finiteness flag per term is gathered from every process (nothing to gather with one process), so
    all processes see the same flags and stop together at the same batch: none is left waiting for the
    others in a collective."""
    terms = {"loss": outputs.loss, **outputs.losses}
    finite = torch.isfinite(torch.stack([value.detach().float().reshape(()) for value in terms.values()]))
    finite = accelerator.gather(finite.view(1, -1)).all(dim=0)
    if bool(finite.all()):
        return
    bad = [name for name, ok in zip(terms, finite.tolist()) if not ok]
    hints = [f"lower --learning_rate (now {args.learning_rate:g})"]
    if args.max_grad_norm == 0:
        hints.append("clip gradients with --max_grad_norm (e.g. 1.0)")
    if args.mixed_precision != "no":
        hints.append(f"train without mixed precision (--mixed_precision no; now {args.mixed_precision})")
    raise NonFiniteLossError(
        f"training stopped at step {step} (step {stage_step} of stage {stage!r}): loss term(s) {', '.join(bad)} "
        f"became NaN or infinite; the step was not applied and no checkpoint or best model was written at it "
        f"(those written before are unchanged). Try: {'; '.join(hints)}"
    )
