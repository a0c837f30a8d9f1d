"""Which loss terms reach the backbone: the gradient norm each WEIGHTED loss term of one forward sends
into the trainable parameters of the CLIP backbone (``model.clip``; a frozen copy such as LCR²S's
``teacher_clip`` is not the backbone), measured without touching the training step's gradients."""

from __future__ import annotations

import torch
from torch import nn


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of ``model.clip`` (the unwrapped model's backbone) that require gradients."""
    return [parameter for parameter in model.clip.parameters() if parameter.requires_grad]


def backbone_gradient_norms(losses: dict[str, torch.Tensor], loss_weight, parameters: list[nn.Parameter]) -> dict:
    """``{"terms": {k: ||d(w_k L_k)/d theta||_2}, "total": ||d(sum_k w_k L_k)/d theta||_2}``.

    ``losses`` are the UNWEIGHTED scalar terms ``L_k`` of one forward (``TIReIDOutput.losses``),
    ``loss_weight(k)`` gives ``w_k`` (``config.loss_weight``), ``parameters`` are theta (every tensor
    together: the L2 norm over all their entries). Terms with ``w_k = 0`` are left out. Each term's
    gradient is ``torch.autograd.grad(w_k * L_k, parameters, retain_graph=True, allow_unused=True)``:
    a parameter the term does not reach, or a term that reaches no parameter at all, contributes 0.
    Nothing is written to ``.grad`` and the graph is kept, so a later ``backward`` of the same forward
    gives the gradients it gives without this call. The total's gradient is the sum of the terms'.
    """
    terms, total = {}, [torch.zeros_like(parameter) for parameter in parameters]
    for name, value in losses.items():
        weight = loss_weight(name)
        if weight == 0:
            continue
        gradients = [None] * len(parameters)
        if value.requires_grad and parameters:
            gradients = torch.autograd.grad(weight * value, parameters, retain_graph=True, allow_unused=True)
        squared = torch.zeros((), dtype=torch.float64)
        for index, gradient in enumerate(gradients):
            if gradient is not None:
                squared += gradient.detach().double().pow(2).sum().cpu()
                total[index] += gradient.detach()
        terms[name] = squared.sqrt().item()
    squared_total = sum((gradient.double().pow(2).sum().cpu() for gradient in total), torch.zeros((), dtype=torch.float64))
    return {"terms": terms, "total": squared_total.sqrt().item()}
