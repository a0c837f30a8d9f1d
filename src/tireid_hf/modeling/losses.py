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


def semi_hard_ranking_loss(
    anchor_embeds: torch.Tensor,
    paired_embeds: torch.Tensor,
    pids: torch.Tensor,
    margin: float,
    generator: torch.Generator | None = None,
    expected: bool = False,
) -> torch.Tensor:
    """Bidirectional triplet loss on cosine similarity with a RANDOM semi-hard negative (LGUR's RANK).

    ``s = normalize(anchor_embeds) @ normalize(paired_embeds)^T``, pair i = (row i, column i) is the
    positive. For every row anchor i (and, on ``s^T``, every column anchor) the negative n(i) is drawn
    uniformly at random, on the detached similarities, from the candidate set::

        C_i = S_i = {j : pid_j != pid_i  and  s_ii - margin < s_ij < s_ii}   (semi-hard: 0 < hinge < margin)
        C_i = H_i = {j : pid_j != pid_i  and  s_ij >= s_ii}                  (when S_i is empty: hard ones)

    With neither (every negative is easy, or no other identity is in the batch) C_i is empty and the
    anchor contributes 0, which is what any negative would give. Then::

        L = sum_i [margin + s_i,n(i) - s_ii]_+  (row anchors)  +  sum_j [margin + s_m(j),j - s_jj]_+  (columns)

    SUMMED over anchors, as the reference code (ZhiyinShao-H/LGUR, RankingLoss) does. The reference
    draws only from S_i and drops an anchor whose S_i is empty; the H_i fallback keeps a gradient on
    anchors whose every violating negative already ranks above the positive (common early in training).
    With ``expected=True`` the draw is replaced by its expectation, each anchor's hinge averaged over
    C_i: a deterministic value (used for evaluation-mode losses).

    Args:
        anchor_embeds, paired_embeds: [N, D] embeddings (normalised here), row i paired with row i.
        pids: [N] identities.
        margin: the margin (0.3 in LGUR).
        generator: random generator for the negative draw (any device); None uses the global one.
        expected: return the expectation over the draw instead of one sample.
    Returns: a scalar.
    """
    if anchor_embeds.shape != paired_embeds.shape or anchor_embeds.shape[0] != pids.shape[0]:
        raise ValueError(
            f"expected anchor_embeds and paired_embeds [N, D] and pids [N], got {list(anchor_embeds.shape)}, "
            f"{list(paired_embeds.shape)} and {list(pids.shape)}"
        )
    similarity = F.normalize(anchor_embeds.float(), dim=-1) @ F.normalize(paired_embeds.float(), dim=-1).t()
    different_identity = pids.view(-1, 1) != pids.view(1, -1)
    loss = similarity.new_zeros(())
    for matrix in (similarity, similarity.t()):  # row anchors, then column anchors
        detached = matrix.detach()
        positive = detached.diagonal().unsqueeze(1)
        violating = different_identity & (detached > positive - margin)
        semi_hard = violating & (detached < positive)
        candidates = torch.where(semi_hard.any(dim=1, keepdim=True), semi_hard, violating).float()
        if expected:
            weights = candidates / candidates.sum(dim=1, keepdim=True).clamp(min=1)
        else:
            device = generator.device if generator is not None else matrix.device
            draw = torch.rand(matrix.shape, generator=generator, device=device).to(matrix.device)
            chosen = draw.masked_fill(candidates == 0, -1.0).argmax(dim=1, keepdim=True)
            weights = torch.zeros_like(candidates).scatter_(1, chosen, 1.0) * candidates
        loss = loss + (F.relu(margin + matrix - matrix.diagonal().unsqueeze(1)) * weights).sum()
    return loss
