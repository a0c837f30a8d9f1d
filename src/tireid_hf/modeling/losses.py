"""Loss functions shared by the TIReID heads. Pure functions of tensors: no modules, no state.

Notation used in every docstring: a batch of N image-text pairs, text i describes image i;
``pids`` [N] are their identity labels; ``logits_per_text`` [N, N] is ``s / tau`` where
``s_ij = cos(t_i, v_j)`` and ``tau`` the temperature; ``y_ij = 1[pid_i == pid_j]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def identity_targets(pids: torch.Tensor) -> torch.Tensor:
    """Row-normalised same-identity matrix ``q_ij = y_ij / sum_k y_ik``, shape [N, N]."""
    same_identity = (pids.view(-1, 1) == pids.view(1, -1)).to(torch.float32)
    return same_identity / same_identity.sum(dim=1, keepdim=True)


def sdm_loss(logits_per_text: torch.Tensor, pids: torch.Tensor, epsilon: float = 1e-8) -> torch.Tensor:
    """Similarity distribution matching (IRRA, CVPR 2023).

    ``p_i = softmax_j(logits_ij)`` is the predicted matching distribution of row i and ``q_i`` the
    true one (uniform over the same-identity columns, see :func:`identity_targets`)::

        L = 1/N sum_i KL(p_i || q_i)  [text->image rows]  +  the same over the columns  [image->text]
        KL(p || q) = sum_j p_j (log p_j - log(q_j + epsilon))

    Args:
        logits_per_text: [N, N] scaled similarities, text rows x image columns.
        pids: [N] identity of pair i.
    Returns: a scalar.
    """
    targets = identity_targets(pids)
    log_targets = torch.log(targets + epsilon)
    loss = logits_per_text.new_zeros(())
    for logits in (logits_per_text, logits_per_text.t()):
        log_predicted = F.log_softmax(logits.float(), dim=1)
        loss = loss + (log_predicted.exp() * (log_predicted - log_targets)).sum(dim=1).mean()
    return loss


def id_loss(image_logits: torch.Tensor, text_logits: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
    """Identity classification with one classifier shared by both modalities::

        L = (CE(W v, pid) + CE(W t, pid)) / 2

    Args:
        image_logits, text_logits: [N, num_ids] outputs of the shared classifier ``W``.
        pids: [N] contiguous identity labels in ``[0, num_ids)``.
    """
    return (F.cross_entropy(image_logits.float(), pids) + F.cross_entropy(text_logits.float(), pids)) / 2


def itc_loss(logits_per_text: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP's contrastive loss): the positive of row i is column i::

        L = (CE(logits, arange(N)) + CE(logits^T, arange(N))) / 2
    """
    targets = torch.arange(logits_per_text.shape[0], device=logits_per_text.device)
    logits = logits_per_text.float()
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2


def hardest_negative_triplet_loss(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, pids: torch.Tensor, margin: float
) -> torch.Tensor:
    """Cross-modal triplet loss on the hardest in-batch negative (VSE++-style), both directions.

    With L2-normalised embeddings, distance ``d = 1 - cos``, ``s = text_embeds @ image_embeds^T``::

        L = mean_i [margin + s_i,n(i) - s_ii]_+   (text anchor i, n(i) = argmax_{j: pid_j != pid_i} s_ij)
          + mean_j [margin + s_m(j),j - s_jj]_+   (image anchor j, m(j) = argmax_{i: pid_i != pid_j} s_ij)

    The hardest negative is chosen on the detached similarities; the loss back-propagates through
    the chosen pairs only. An anchor with no other identity in the batch contributes 0.

    Args:
        image_embeds, text_embeds: [N, D] L2-normalised embeddings, pair i = (image i, text i).
        pids: [N] identities.
        margin: the margin (0.05 in UIT).
    """
    similarity = text_embeds.float() @ image_embeds.float().t()
    same_identity = pids.view(-1, 1) == pids.view(1, -1)
    positive = similarity.diagonal()
    masked = similarity.detach().masked_fill(same_identity, float("-inf"))
    has_negative = ~same_identity.all(dim=1)
    loss = similarity.new_zeros(())
    for dim in (1, 0):  # 1: text anchors over image columns; 0: image anchors over text rows
        hardest = masked.argmax(dim=dim, keepdim=True)
        negative = similarity.gather(dim, hardest).squeeze(dim)
        hinge = F.relu(margin + negative - positive) * has_negative
        loss = loss + hinge.mean()
    return loss


def masked_patch_mse(predicted: torch.Tensor, target: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the MASKED patches only (MAE's reconstruction loss; UIT's ``tir``).

    With ``m_nl = 1`` for a masked (dropped) patch l of image n and K values per patch::

        L = sum_{n,l} m_nl * (1/K) sum_k (predicted_nlk - target_nlk)^2  /  sum_{n,l} m_nl

    Predictions on kept patches (m_nl = 0) do not enter the loss.

    Args:
        predicted, target: [N, P, K] patch values (P patches of K = patch * patch * channels values).
        masked: [N, P] bool (or 0/1), True where the patch was dropped; at least one must be True.
    Returns: a scalar.
    """
    if predicted.shape != target.shape or masked.shape != predicted.shape[:2]:
        raise ValueError(
            f"masked_patch_mse: predicted {list(predicted.shape)} and target {list(target.shape)} must match and "
            f"masked must be their first two dims, got {list(masked.shape)}"
        )
    weights = masked.to(torch.float32)
    per_patch = (predicted.float() - target.float()).pow(2).mean(dim=-1)
    return (per_patch * weights).sum() / weights.sum()
