"""Loss functions shared by the TIReID heads. Pure functions of tensors: no modules, no state.

Notation used in every docstring: a batch of N image-text pairs, text i describes image i;
``pids`` [N] are their identity labels; ``logits_per_text`` [N, N] is ``s / tau`` where
``s_ij = cos(t_i, v_j)`` and ``tau`` the temperature; ``y_ij = 1[pid_i == pid_j]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Label of a position that no token-prediction loss scores (CADA's masked_labels outside the masks).
IGNORE_INDEX = -100


def identity_targets(pids: torch.Tensor) -> torch.Tensor:
    """Row-normalised same-identity matrix ``q_ij = y_ij / sum_k y_ik``, shape [N, N]."""
    same_identity = (pids.view(-1, 1) == pids.view(1, -1)).to(torch.float32)
    return same_identity / same_identity.sum(dim=1, keepdim=True)


def kl_elements(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """The terms ``p_ij (log p_ij - log q_ij)`` of ``KL(p_i || q_i)`` (row i sums them), [N, N] from the
    [N, N] row-wise log-distributions ``log_p`` and ``log_q``."""
    return log_p.exp() * (log_p - log_q)


def over_rows_and_columns(row_loss, *matrices: torch.Tensor) -> torch.Tensor:
    """A retrieval loss in both directions: ``row_loss(*matrices)`` over the rows (text -> image) plus
    ``row_loss`` of their transposes (image -> text). Every matrix is [N, N], text rows x image columns,
    and ``row_loss`` treats each row as one query's distribution over the other modality."""
    return row_loss(*matrices) + row_loss(*(matrix.t() for matrix in matrices))


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
    log_targets = torch.log(identity_targets(pids) + epsilon)  # symmetric: the columns' targets too

    def rows(logits):
        return kl_elements(F.log_softmax(logits.float(), dim=1), log_targets).sum(dim=1).mean()

    return over_rows_and_columns(rows, logits_per_text)


def id_loss(image_logits: torch.Tensor, text_logits: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
    """Identity classification with one classifier shared by both modalities::

        L = (CE(W v, pid) + CE(W t, pid)) / 2

    Args:
        image_logits, text_logits: [N, num_ids] outputs of the shared classifier ``W``.
        pids: [N] contiguous identity labels in ``[0, num_ids)``.
    """
    return (F.cross_entropy(image_logits.float(), pids) + F.cross_entropy(text_logits.float(), pids)) / 2


def hardest_negative_triplet_loss(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, pids: torch.Tensor, margin: float
) -> torch.Tensor:
    """Cross-modal triplet loss on the hardest in-batch negative (VSE++-style), both directions.

    With L2-normalised embeddings, distance ``d = 1 - cos``, ``s = text_embeds @ image_embeds^T``::

        L = mean_i [margin + s_i,n(i) - s_ii]_+   (text anchor i, n(i) = argmax_{j: pid_j != pid_i} s_ij)
          + mean_j [margin + s_m(j),j - s_jj]_+   (image anchor j, m(j) = argmax_{i: pid_i != pid_j} s_ij)

    The hardest negative is chosen on the detached similarities (:func:`hardest_negatives`); the loss
    back-propagates through the chosen pairs only. An anchor with no other identity in the batch contributes 0.

    Args:
        image_embeds, text_embeds: [N, D] L2-normalised embeddings, pair i = (image i, text i).
        pids: [N] identities.
        margin: the margin (0.05 in UIT).
    """
    similarity = text_embeds.float() @ image_embeds.float().t()
    positive = similarity.diagonal()
    image_for_text, text_for_image, has_negative = hardest_negatives(similarity, pids)
    pairs = torch.arange(similarity.shape[0], device=similarity.device)
    text_anchors = F.relu(margin + similarity[pairs, image_for_text] - positive) * has_negative
    image_anchors = F.relu(margin + similarity[text_for_image, pairs] - positive) * has_negative
    return text_anchors.mean() + image_anchors.mean()


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


def feature_distillation_loss(student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """Intra-modal feature distillation (LCR2S): the student's embedding of a single sample
    approaches the teacher's enriched embedding of the same sample, in cosine::

        L = 1/N sum_i (1 - cos(s_i, t_i))

    Equal to ``MSE / 2`` between the L2-normalised embeddings. The caller detaches ``teacher_features``
    when the teacher must not learn from it.

    Args:
        student_features, teacher_features: [N, D] (not necessarily normalised).
    Returns: a scalar.
    """
    cosine = F.cosine_similarity(student_features.float(), teacher_features.float(), dim=-1)
    return (1.0 - cosine).mean()


def relation_kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Inter-modal relation distillation with a KL divergence (LCR2S): the row-wise softmaxed
    in-batch similarity matrix of the teacher is the target of the student's, over the rows
    (text -> image) and over the columns (image -> text), summed like :func:`sdm_loss`::

        p_i = softmax_j(teacher_logits_ij),  q_i = softmax_j(student_logits_ij)
        L = 1/N sum_i KL(p_i || q_i)  +  the same over the columns
        KL(p || q) = sum_j p_j (log p_j - log q_j)

    Args:
        student_logits, teacher_logits: [N, N] scaled similarities (``cos / tau``), text rows x image columns.
    Returns: a scalar.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student_logits {list(student_logits.shape)} and teacher_logits {list(teacher_logits.shape)} differ"
        )

    def rows(student, teacher):
        log_student, log_teacher = F.log_softmax(student.float(), dim=1), F.log_softmax(teacher.float(), dim=1)
        return kl_elements(log_teacher, log_student).sum(dim=1).mean()

    return over_rows_and_columns(rows, student_logits, teacher_logits)


def relation_frobenius_loss(student_similarity: torch.Tensor, teacher_similarity: torch.Tensor) -> torch.Tensor:
    """Inter-modal relation distillation (LCR2S) with a squared, size-normalised Frobenius distance
    between the in-batch cosine similarity matrices::

        L = 1/N^2 ||S_student - S_teacher||_F^2 = mean_ij (S_student_ij - S_teacher_ij)^2

    Args:
        student_similarity, teacher_similarity: [N, N] cosine similarities, text rows x image columns.
    Returns: a scalar.
    """
    if student_similarity.shape != teacher_similarity.shape:
        raise ValueError(
            f"student_similarity {list(student_similarity.shape)} and teacher_similarity "
            f"{list(teacher_similarity.shape)} differ"
        )
    return (student_similarity.float() - teacher_similarity.float()).pow(2).mean()


NDF_REDUCTIONS = ("reference", "per_row")


def ndf_loss(
    logits_per_text: torch.Tensor, pids: torch.Tensor, reduction: str = "reference", epsilon: float = 1e-8
) -> torch.Tensor:
    """CADA's global loss (the reference code's ``ndf_loss``): SDM, its reverse KL and a soft-label
    cross-entropy, averaged over the two retrieval directions.

    With ``p_i = softmax_j(logits_ij)`` and ``q_i`` the same-identity targets of
    :func:`identity_targets`, the entries of row i are::

        f_ij = p_ij (log p_ij - log(q_ij + epsilon))        (SDM's KL(p_i || q_i) = sum_j f_ij)
        r_ij = q_ij (log(q_ij + epsilon) - log p_ij)        (the reverse KL(q_i || p_i) = sum_j r_ij)
        H_i  = - sum_j q_ij log p_ij                        (soft-label cross-entropy)

    ``reduction="reference"`` (the reference code: its KL matrix is averaged over all N x N entries,
    to which the batch-mean cross-entropy is added as a scalar)::

        l = 1/N^2 sum_ij (f_ij + r_ij)  +  1/N sum_i H_i

    ``reduction="per_row"`` (every term a per-row sum averaged over rows: the KL terms carry N times
    the reference's weight)::

        l = 1/N sum_i (sum_j (f_ij + r_ij) + H_i)

    Either way ``L = (l [text->image rows] + l [image->text columns]) / 2``.

    Args:
        logits_per_text: [N, N] scaled similarities ``cos / tau`` (tau = 0.02), text rows x image columns.
        pids: [N] identity of pair i.
        reduction: ``"reference"`` or ``"per_row"`` (see above).
    Returns: a scalar.
    """
    if reduction not in NDF_REDUCTIONS:
        raise ValueError(f"ndf_loss: reduction must be one of {NDF_REDUCTIONS}, got {reduction!r}")
    targets = identity_targets(pids)  # symmetric: the columns' targets too
    log_targets = torch.log(targets + epsilon)

    def rows(logits):
        log_predicted = F.log_softmax(logits.float(), dim=1)
        kl = kl_elements(log_predicted, log_targets) + targets * (log_targets - log_predicted)
        cross_entropy = -(targets * log_predicted).sum(dim=1).mean()
        return cross_entropy + (kl.sum(dim=1).mean() if reduction == "per_row" else kl.mean())

    return over_rows_and_columns(rows, logits_per_text) / 2


def hardest_negatives(similarity: torch.Tensor, pids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """In-batch hard-negative mining for image-text matching (ALBEF/BLIP style, argmax instead of sampling).

    Same-identity pairs are never negatives::

        image_for_text[i] = argmax_{j: pid_j != pid_i} s_ij      (hardest negative image of text i)
        text_for_image[j] = argmax_{i: pid_i != pid_j} s_ij      (hardest negative text of image j)

    Args:
        similarity: [N, N] text rows x image columns (chosen on detached values; no gradient).
        pids: [N] identities.
    Returns: ``image_for_text`` [N], ``text_for_image`` [N] (long) and ``has_negative`` [N] bool: pair i
    has a different identity in the batch (otherwise its two indices are meaningless and must be dropped).
    """
    same_identity = pids.view(-1, 1) == pids.view(1, -1)
    masked = similarity.detach().float().masked_fill(same_identity, float("-inf"))
    return masked.argmax(dim=1), masked.argmax(dim=0), ~same_identity.all(dim=1)


def matching_loss(match_logits: torch.Tensor, is_match: torch.Tensor) -> torch.Tensor:
    """Image-text matching (ITM): 2-way classification of decoded pairs, class 1 = "match"::

        L = 1/M sum_m -log softmax(match_logits_m)[is_match_m]

    Args:
        match_logits: [M, 2] logits of M image-text pairs (positives and mined negatives together).
        is_match: [M] long, 1 for a positive pair, 0 for a negative one.
    """
    return F.cross_entropy(match_logits.float(), is_match)


def masked_token_loss(token_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Masked-token prediction (CADA's ARA, an MLM restricted to masked positions)::

        L = 1/M sum_m -log softmax(token_logits_m)[targets_m]      (0 when M = 0)

    Args:
        token_logits: [M, vocab] predictions at the M masked positions only.
        targets: [M] the original token ids there.
    Returns: a scalar, the summed cross-entropy over max(M, 1): an exact 0 still attached to the graph
    when M = 0, with no branch on M (a traced forward needs no value of M).
    """
    total = F.cross_entropy(token_logits.float(), targets, reduction="sum")
    return total / torch.ones_like(targets, dtype=total.dtype).sum().clamp(min=1.0)


def semi_hard_ranking_loss(
    anchor_embeds: torch.Tensor,
    paired_embeds: torch.Tensor,
    pids: torch.Tensor,
    margin: float,
    generator: torch.Generator | None = None,
    expected: bool = False,
    hard_fallback: bool = False,
) -> torch.Tensor:
    """Bidirectional triplet loss on cosine similarity with a RANDOM semi-hard negative (LGUR's RANK).

    ``s = normalize(anchor_embeds) @ normalize(paired_embeds)^T``, pair i = (row i, column i) is the
    positive. For every row anchor i (and, on ``s^T``, every column anchor) the negative n(i) is drawn
    uniformly at random, on the detached similarities, from the candidate set::

        C_i = S_i = {j : pid_j != pid_i  and  s_ii - margin < s_ij < s_ii}   (semi-hard: 0 < hinge < margin)
        C_i = H_i = {j : pid_j != pid_i  and  s_ij >= s_ii}   (only with ``hard_fallback``, when S_i is empty)

    An anchor whose C_i is empty contributes 0 (the reference code, ZhiyinShao-H/LGUR's RankingLoss,
    drops it). Then::

        L = sum_i [margin + s_i,n(i) - s_ii]_+  (row anchors)  +  sum_j [margin + s_m(j),j - s_jj]_+  (columns)

    SUMMED over anchors, as the reference. With ``expected=True`` the draw is replaced by its
    expectation, each anchor's hinge averaged over C_i: a deterministic value.

    Args:
        anchor_embeds, paired_embeds: [N, D] embeddings (normalised here), row i paired with row i.
        pids: [N] identities.
        margin: the margin (0.3 in LGUR).
        generator: random generator for the negative draw (any device); None uses the global one.
        expected: return the expectation over the draw instead of one sample.
        hard_fallback: draw from the hard negatives H_i when an anchor has no semi-hard one (ours; the
            reference drops the anchor).
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
        candidates = (torch.where(semi_hard.any(dim=1, keepdim=True), semi_hard, violating) if hard_fallback
                      else semi_hard).float()
        if expected:
            weights = candidates / candidates.sum(dim=1, keepdim=True).clamp(min=1)
        else:
            device = generator.device if generator is not None else matrix.device
            draw = torch.rand(matrix.shape, generator=generator, device=device).to(matrix.device)
            chosen = draw.masked_fill(candidates == 0, -1.0).argmax(dim=1, keepdim=True)
            weights = torch.zeros_like(candidates).scatter_(1, chosen, 1.0) * candidates
        loss = loss + (F.relu(margin + matrix - matrix.diagonal().unsqueeze(1)) * weights).sum()
    return loss
