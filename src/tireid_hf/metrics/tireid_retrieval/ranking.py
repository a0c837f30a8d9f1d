"""Rank-k, mAP and mINP of cross-modal retrieval, as plain torch.

This is the ONE implementation of the retrieval metrics in tireid-hf: training, ``tireid evaluate``,
the benchmarks, the model cards (through :mod:`tireid_hf.metrics.retrieval`) and the ``evaluate``
module beside it (``tireid_retrieval.py``) all call :func:`rank_metrics`. It lives in the evaluate
module's folder and imports only numpy and torch (tqdm for a progress bar) so that the module stands
alone: ``evaluate.load`` copies this file next to the module script (a relative import), on the Hub
as locally, and the module needs no tireid-hf.

Definitions (the ones TIReID papers report, e.g. IRRA's ``rank`` and mINP from Ye et al., "Deep
Learning for Person Re-identification", TPAMI 2021). For one query with ``n`` relevant gallery items
(same pid) whose 1-based ranks in the sorted gallery are ``r_1 < r_2 < ... < r_n``:

* hit@k = 1 if ``r_1 <= k`` else 0; ``R{k} = 100 * mean(hit@k)``. When ``k >= G`` the k highest
  scores are the whole gallery, so every evaluated query is a hit.
* AP = (1 / n) * sum_j (j / r_j), i.e. the precision at the rank of EVERY relevant item, summed and
  divided by the number of relevant items in the whole gallery; ``mAP = 100 * mean(AP)``.
* INP = n / r_n (r_n: rank of the hardest, i.e. last, relevant item); ``mINP = 100 * mean(INP)``.

Same-person decisions (verification, not ranking): every query-gallery PAIR of the similarity matrix
is a positive (same pid) or a negative, and a pair is accepted when ``score >= threshold``. For a
false-positive-rate target ``f`` with ``N`` negative and ``P`` positive pairs, at most
``m = max{j in 0..N : j / N <= f}`` negatives may be accepted; the threshold
(:func:`score_threshold_at_fpr`) is the smallest score value of the matrix whose acceptance keeps
``FP <= m``, and ``TPR@FPR=f = 100 * (accepted positives) / P``. With the negative scores sorted
``v_1 >= v_2 >= ... >= v_N``: when ``m < N`` the threshold is the smallest score strictly above
``v_{m+1}`` (or, when no score is above it, the next representable value of the scores' dtype above
``v_{m+1}``, which accepts nothing), so the accepted pairs are exactly those scoring above
``v_{m+1}``; when ``m >= N`` (``f = 1``, or no negatives at all, whose FPR counts as 0) it is the
smallest score, which accepts every pair.

Ranking and ties: gallery items are sorted by decreasing score and equal scores keep gallery order
(a stable ranking), so item ``l`` precedes item ``m`` iff ``s_l > s_m`` or (``s_l == s_m`` and
``l < m``). Equivalently the rank of item ``m`` is
``1 + #{l : s_l > s_m} + #{l < m : s_l == s_m}``.

How it is computed: only the ranks of the relevant items are needed, never the full sorted gallery.
Queries are processed in chunks (bounded memory). In a chunk whose queries have few relevant items
(the TIReID case: a handful of images per identity) each relevant item's rank is counted directly
with the formula above, which costs ``O(n * G)`` per query; in a chunk with many relevant items per
query the rows are sorted (stable) instead, ``O(G log G)`` per query. Both give the same ranks.
The same chunks feed the TPR@FPR keys, which keep every positive score and only the
``m + 1`` highest negative scores (a running top-k), never the whole matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["rank_metrics", "score_threshold_at_fpr", "check_integer_pids", "DIRECTIONS", "TPR_AT_FPR"]

DIRECTIONS = ("t2i", "i2t")
TPR_AT_FPR = {"TPR@FPR=1e-2": 1e-2, "TPR@FPR=1e-3": 1e-3}
"""The TPR keys of :func:`rank_metrics` and the false-positive-rate target of each."""

# Similarity entries per chunk of queries. Small enough for the chunk's masks to stay in cache (which
# matters more for speed than larger vectorised kernels) and to bound the working memory: with at
# most _MAX_RELEVANT_FOR_COUNTING relevant items per query, a chunk needs well under 200 MiB.
_CHUNK_ELEMENTS = 2**20
# Above this many relevant items per query (in a chunk), sorting the rows is cheaper than counting.
_MAX_RELEVANT_FOR_COUNTING = 32


def _as_tensor(value, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError) as error:
        raise TypeError(f"`{name}` must be a torch tensor, a numpy array or a list, got {type(value).__name__}") from error


def _as_pids(value, name: str, expected_length: int, expected_from: str) -> torch.Tensor:
    check_integer_pids(value, name)
    pids = _as_tensor(value, name)
    if pids.numel() == 0:  # an empty list converts to float64
        pids = pids.to(torch.int64)
    if pids.dtype.is_floating_point or pids.dtype.is_complex or pids.dtype == torch.bool:
        raise TypeError(f"`{name}` must hold integer pids, got dtype {pids.dtype}")
    if pids.dim() != 1 or pids.shape[0] != expected_length:
        raise ValueError(
            f"`{name}` must have shape [{expected_length}] ({expected_from}), got {list(pids.shape)}"
        )
    return pids.to(device="cpu", dtype=torch.int64)


def check_integer_pids(value, name: str) -> None:
    """Raises a TypeError naming ``name`` when ``value`` holds strings or other non-numbers (identities
    must be mapped to integers before ranking)."""
    if isinstance(value, torch.Tensor):
        return
    if np.asarray(value).dtype.kind in "USO":
        items = np.asarray(value, dtype=object).ravel()
        shown = repr(list(items[:3]))[:-1] + (", ...]" if items.size > 3 else "]")
        raise TypeError(f"`{name}` must hold integer pids, got {shown}: map each identity to an integer first")


def _count(mask: torch.Tensor) -> torch.Tensor:
    """Number of True entries along the last dimension (summing bytes: much faster than bool.sum)."""
    return mask.view(torch.uint8).sum(-1, dtype=torch.int32).long()


def _all_finite(scores: torch.Tensor) -> bool:
    """Whether no entry is NaN or +-inf. A finite sum proves it (NaN and inf propagate), and costs
    far less than ``isfinite``; only a non-finite sum (bad input, or an overflow) needs the full check."""
    return bool(torch.isfinite(scores.sum())) or bool(torch.isfinite(scores).all())


def _relevant_ranks_by_counting(
    scores: torch.Tensor, relevant: torch.Tensor, count: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows and 1-based stable ranks of the relevant items, by counting the items ranked above each.

    ``scores`` [C, G], ``relevant`` [C, G] bool, ``count`` [C] relevant items per row. The relevant
    items are padded to [C, M] (M = max count) and compared with the whole row at once:
    rank = 1 + #{l : s_l > r} + #{l < m : s_l == r} for the relevant item m with score r.
    """
    rows, cols = relevant.nonzero(as_tuple=True)  # row-major: grouped by row, in gallery order
    slot = torch.arange(rows.shape[0]) - (torch.cumsum(count, 0) - count)[rows]
    num_rows, max_count = scores.shape[0], int(count.max())
    own = torch.full((num_rows, max_count), float("inf"), dtype=scores.dtype)  # +inf: padding, never counted
    own[rows, slot] = scores[rows, cols]
    higher = _count(scores[:, None, :] > own[:, :, None])  # [C, M]
    equal = _count(scores[:, None, :] == own[:, :, None])  # includes the item itself
    ranks = higher[rows, slot] + 1
    tied = (equal[rows, slot] > 1).nonzero().squeeze(1)
    if tied.numel():  # rare with real scores: add the equal scores earlier in the gallery
        earlier = torch.arange(scores.shape[1])[None, :] < cols[tied, None]
        ranks[tied] += ((scores[rows[tied]] == scores[rows[tied], cols[tied]][:, None]) & earlier).sum(1)
    # Order each row's relevant items by rank (key: row first, then rank; keys are distinct).
    order = torch.argsort(rows * (scores.shape[1] + 1) + ranks)
    return rows[order], ranks[order]


def _relevant_ranks_by_sorting(scores: torch.Tensor, relevant: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows and 1-based stable ranks of the relevant items, by sorting each row of ``scores``."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    rows, positions = relevant.gather(1, order).nonzero(as_tuple=True)
    return rows, positions + 1


def rank_metrics(
    similarity,
    query_pids,
    gallery_pids,
    ks: Sequence[int] = (1, 5, 10),
    *,
    direction: str = "t2i",
    skip_queries_without_match: bool = False,
    show_progress: bool = False,
) -> dict[str, float]:
    """Rank-k, mAP, mINP and TPR at two false-positive rates (percentages) of a gallery ranked for every query.

    Args:
        similarity (`torch.Tensor` or `np.ndarray` of shape [Q, G]): score of every query (row)
            against every gallery item (column), higher = more similar; e.g. ``text_embeds @
            image_embeds.T``. Any real dtype; it is compared in its own dtype (never rounded).
        query_pids (integers, shape [Q]): identity of each row.
        gallery_pids (integers, shape [G]): identity of each column. Relevant = same pid.
        ks (`Sequence[int]`, *optional*, defaults to ``(1, 5, 10)``): the k of the ``R{k}`` keys.
        direction (`str`, *optional*, defaults to ``"t2i"``): ``"t2i"`` ranks the columns for each
            row. ``"i2t"`` ranks the rows for each column, i.e. the same arguments as for ``"t2i"``
            (a [num_texts, num_images] similarity with text and image pids) evaluated on the
            transposed problem: image queries, text gallery.
        skip_queries_without_match (`bool`, *optional*, defaults to `False`): a query whose pid has
            no gallery item has no defined AP. By default that is an error (the evaluation protocol
            is broken); with `True` such queries are left out of the rank keys and counted under
            ``num_skipped_queries``.
        show_progress (`bool`, *optional*, defaults to `False`): a tqdm bar over query chunks.

    Returns:
        `dict`: ``R{k}`` for each k, ``mAP``, ``mINP``, ``TPR@FPR=1e-2`` and ``TPR@FPR=1e-3`` as floats
        in [0, 100], ``num_queries`` (the queries ranked) and, when ``skip_queries_without_match`` is
        set, ``num_skipped_queries``. The TPR keys are same-person decisions over ALL Q x G pairs of
        ``similarity`` (skipped queries' pairs included, as negatives; the same in both directions):
        the share of positive pairs accepted at :func:`score_threshold_at_fpr` of that rate (the
        module docstring gives the threshold and tie rule).

    Raises:
        ValueError: shapes that do not agree, an empty gallery or query set, NaN/inf scores, an
            unknown direction, invalid ``ks``, queries without a relevant item (unless skipped).
        TypeError: non-numeric similarity or non-integer pids.

    Memory: queries are processed in chunks of about 2**20 similarity entries (tens of MiB of working
    memory) plus O(Q) for per-query results and, for the TPR keys, every positive pair's score and
    the ``floor(1e-2 * N) + 1`` highest of the N negative pairs' scores; the similarity itself is
    never copied whole.
    """
    return rank_metrics_with_per_query(similarity, query_pids, gallery_pids, ks, direction=direction,
                                       skip_queries_without_match=skip_queries_without_match,
                                       show_progress=show_progress)[0]


def rank_metrics_with_per_query(similarity, query_pids, gallery_pids, ks: Sequence[int] = (1, 5, 10), *,
                                direction: str = "t2i", skip_queries_without_match: bool = False,
                                show_progress: bool = False) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """:func:`rank_metrics` and :func:`per_query_metrics` of one ranking, computed once: ``(metrics, per_query)``."""
    ks = _check_ks(ks)
    ranks = _query_ranks(similarity, query_pids, gallery_pids, direction=direction,
                         skip_queries_without_match=skip_queries_without_match, show_progress=show_progress)
    per_query = _per_query(ranks, ks)
    results: dict[str, float] = {f"R{k}": 100.0 * per_query[f"R{k}"].mean().item() for k in ks}
    results["mAP"] = 100.0 * per_query["AP"].mean().item()
    results["mINP"] = 100.0 * per_query["INP"].mean().item()
    for key, fpr in TPR_AT_FPR.items():
        results[key] = 100.0 * ranks.pair_scores.true_positive_rate(fpr)
    results["num_queries"] = int(ranks.first_rank.shape[0])
    if skip_queries_without_match:
        results["num_skipped_queries"] = ranks.num_skipped
    return results, {**per_query, "pid": ranks.pids, "query_index": ranks.query_index}


def score_threshold_at_fpr(similarity, query_pids, gallery_pids, fpr: float) -> float:
    """The score threshold of same-person decisions at false-positive rate ``fpr``: the one behind
    :func:`rank_metrics`' ``TPR@FPR`` keys.

    A query-gallery pair is accepted as the same person when ``score >= threshold``; the threshold
    is the smallest score value of ``similarity`` whose acceptance keeps the false-positive rate over
    all Q x G pairs (negative = different pids) at most ``fpr`` (ties, the case of no score above
    the allowed negatives and the case without negatives: module docstring).

    Args:
        similarity (`torch.Tensor` or `np.ndarray` of shape [Q, G]): scores, as for :func:`rank_metrics`.
        query_pids (integers, shape [Q]) and gallery_pids (integers, shape [G]): identities; queries
            need no match in the gallery.
        fpr (`float`): the target false-positive rate, in [0, 1].

    Returns:
        `float`: the threshold, a value of ``similarity``'s dtype.

    Raises:
        ValueError: ``fpr`` outside [0, 1], and the shape, emptiness and NaN/inf errors of
            :func:`rank_metrics`; TypeError: non-numeric similarity or non-integer pids.
    """
    _check_fpr(fpr)
    similarity, query_pids, gallery_pids, _ = _checked_problem(similarity, query_pids, gallery_pids, "t2i")
    pair_scores = _PairScores(similarity, query_pids, gallery_pids, (fpr,))
    for _, scores, relevant in _chunks(similarity, query_pids, gallery_pids, "t2i", show_progress=False):
        pair_scores.add(scores, relevant)
    return pair_scores.threshold(fpr)


def _check_fpr(fpr) -> None:
    if isinstance(fpr, bool) or not isinstance(fpr, (int, float, np.integer, np.floating)) or not 0 <= fpr <= 1:
        raise ValueError(f"`fpr` must be a false-positive rate in [0, 1], got {fpr!r}")


class _PairScores:
    """What the same-person decisions over all pairs need, gathered chunk by chunk: the score of every
    positive pair, the ``keep`` highest negative scores (``keep = m + 1`` for the largest allowed
    number of false positives ``m < N`` among the targets ``fprs``) and the smallest score. Memory:
    P positive scores plus at most ``2 * keep`` negative ones besides the chunk."""

    def __init__(self, similarity: torch.Tensor, query_pids: torch.Tensor, gallery_pids: torch.Tensor,
                 fprs: Sequence[float]):
        ids, inverse = torch.unique(torch.cat([query_pids, gallery_pids]), return_inverse=True)
        per_query = torch.bincount(inverse[: len(query_pids)], minlength=len(ids))
        per_gallery = torch.bincount(inverse[len(query_pids):], minlength=len(ids))
        self.num_positive = int((per_query * per_gallery).sum())
        self.num_negative = similarity.numel() - self.num_positive
        allowed = [self.allowed_false_positives(fpr) for fpr in fprs]
        self.keep = max([m + 1 for m in allowed if m < self.num_negative], default=0)
        self.dtype = similarity.dtype
        self.positives: list[torch.Tensor] = []
        self.negatives = torch.empty(0, dtype=similarity.dtype)  # holds the keep highest negatives, and more
        self.floor = torch.tensor(float("-inf"), dtype=similarity.dtype)
        self.smallest = float("inf")

    def allowed_false_positives(self, fpr: float) -> int:
        """``m = max{j in 0..N : j / N <= fpr}`` (0 = N without negatives), with j / N as a float
        division, so that e.g. 29 of 100 negatives meet ``fpr = 0.29``."""
        n = self.num_negative
        m = min(n, int(fpr * n))
        while m < n and (m + 1) / n <= fpr:
            m += 1
        while m > 0 and m / n > fpr:
            m -= 1
        return m

    def add(self, scores: torch.Tensor, relevant: torch.Tensor) -> None:
        """One chunk: ``scores`` [C, G] and ``relevant`` [C, G] (same pid)."""
        self.positives.append(scores[relevant])
        self.smallest = min(self.smallest, scores.min().item())
        if self.keep:  # only scores above the keep-th highest negative so far can be among the top keep
            self.negatives = torch.cat([self.negatives, scores[(scores > self.floor) & ~relevant]])
            if self.negatives.numel() >= 2 * self.keep:
                self.negatives = self.negatives.topk(self.keep, sorted=False).values
                self.floor = self.negatives.min()

    def _cut(self, fpr: float) -> torch.Tensor | None:
        """``v_{m+1}``, the highest negative score that must be rejected, or None when m >= N."""
        m = self.allowed_false_positives(fpr)
        if m >= self.num_negative:
            return None
        return self.negatives.topk(m + 1).values[m]

    def threshold(self, fpr: float) -> float:
        cut = self._cut(fpr)
        if cut is None:
            return self.smallest
        above = torch.cat([self.negatives, *self.positives])
        above = above[above > cut]
        if above.numel():
            return above.min().item()
        return torch.nextafter(cut, torch.tensor(float("inf"), dtype=self.dtype)).item()

    def true_positive_rate(self, fpr: float) -> float:
        """The share of positive pairs accepted at :meth:`threshold` (those scoring above the cut)."""
        cut = self._cut(fpr)
        if cut is None:
            return 1.0
        return sum(_count(positives > cut).item() for positives in self.positives) / self.num_positive


@dataclass(frozen=True)
class _QueryRanks:
    """Where each evaluated query's relevant items landed (queries without any are left out).

    ``query_index`` [Q'] positions of the evaluated queries among all queries; ``pids`` [Q'] their
    identities; ``first_rank`` / ``last_rank`` [Q'] 1-based ranks of their first and last relevant
    item; ``num_relevant`` [Q']; ``precision_sum`` [Q'] ``sum_j j / rank_j`` over the relevant items
    (so AP = precision_sum / num_relevant); ``num_skipped`` queries without a relevant item;
    ``pair_scores`` the scores of all pairs that the TPR@FPR keys need.
    """

    query_index: torch.Tensor
    pids: torch.Tensor
    first_rank: torch.Tensor
    last_rank: torch.Tensor
    num_relevant: torch.Tensor
    precision_sum: torch.Tensor
    num_skipped: int
    pair_scores: _PairScores


def _checked_problem(similarity, query_pids, gallery_pids, direction: str):
    """The checked problem as ``(scores [Q, G] on the CPU, query pids [Q], gallery pids [G], given)``
    with queries as rows (transposed for ``"i2t"``), integer scores as float64; ``given`` describes
    the similarity passed in, for error messages."""
    if direction not in DIRECTIONS:
        raise ValueError(f"`direction` must be one of {DIRECTIONS}, got {direction!r}")
    similarity = _as_tensor(similarity, "similarity")
    if similarity.dim() != 2:
        raise ValueError(f"`similarity` must have shape [num_queries, num_gallery], got {list(similarity.shape)}")
    if similarity.dtype == torch.bool or similarity.dtype.is_complex:
        raise TypeError(f"`similarity` must hold real scores, got dtype {similarity.dtype}")
    similarity = similarity.cpu()
    given = f"`similarity` has shape {list(similarity.shape)} ({direction})"
    query_pids = _as_pids(query_pids, "query_pids", similarity.shape[0], "one per row of `similarity`")
    gallery_pids = _as_pids(gallery_pids, "gallery_pids", similarity.shape[1], "one per column of `similarity`")
    if direction == "i2t":  # image queries (columns), text gallery (rows)
        similarity, query_pids, gallery_pids = similarity.T, gallery_pids, query_pids
    num_queries, num_items = similarity.shape
    if num_items == 0:
        raise ValueError(f"the gallery is empty: {given}")
    if num_queries == 0:
        raise ValueError(f"there are no queries: {given}")
    if not similarity.dtype.is_floating_point:  # integer scores: float64 holds them exactly
        similarity = similarity.to(torch.float64)
    return similarity, query_pids, gallery_pids, given


def _chunks(similarity: torch.Tensor, query_pids: torch.Tensor, gallery_pids: torch.Tensor, direction: str, *,
            show_progress: bool):
    """``(start, scores [C, G], relevant [C, G])`` for consecutive chunks of about ``_CHUNK_ELEMENTS``
    entries of a checked problem; a NaN/inf score is an error naming its place in the matrix passed in."""
    num_queries, num_items = similarity.shape
    rows_per_chunk = max(1, min(num_queries, _CHUNK_ELEMENTS // num_items))
    starts = range(0, num_queries, rows_per_chunk)
    if show_progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"rank metrics ({direction})", unit="chunk")
    for start in starts:
        stop = min(start + rows_per_chunk, num_queries)
        scores = similarity[start:stop].contiguous()
        if not _all_finite(scores):
            query, item = (~torch.isfinite(scores)).nonzero()[0].tolist()
            row, column = (item, start + query) if direction == "i2t" else (start + query, item)
            raise ValueError(f"`similarity` holds NaN or inf scores (first found at row {row}, column {column})")
        yield start, scores, query_pids[start:stop, None] == gallery_pids[None, :]


def _query_ranks(similarity, query_pids, gallery_pids, *, direction: str, skip_queries_without_match: bool,
                 show_progress: bool) -> _QueryRanks:
    """The per-query part of :func:`rank_metrics` (same arguments, same checks and errors)."""
    similarity, query_pids, gallery_pids, _ = _checked_problem(similarity, query_pids, gallery_pids, direction)
    num_queries = similarity.shape[0]
    pair_scores = _PairScores(similarity, query_pids, gallery_pids, tuple(TPR_AT_FPR.values()))

    first_rank = torch.empty(num_queries, dtype=torch.int64)
    last_rank = torch.empty(num_queries, dtype=torch.int64)
    average_precision = torch.zeros(num_queries, dtype=torch.float64)
    num_relevant = torch.empty(num_queries, dtype=torch.int64)

    for start, scores, relevant in _chunks(similarity, query_pids, gallery_pids, direction,
                                           show_progress=show_progress):
        stop = start + scores.shape[0]
        pair_scores.add(scores, relevant)
        count = _count(relevant)
        num_relevant[start:stop] = count
        if int(count.max()) == 0:
            continue
        if int(count.max()) <= _MAX_RELEVANT_FOR_COUNTING:
            rows, ranks = _relevant_ranks_by_counting(scores, relevant, count)
        else:
            rows, ranks = _relevant_ranks_by_sorting(scores, relevant)
        # j: 1-based position of each relevant item among its query's relevant items.
        offsets = torch.cumsum(count, 0) - count
        j = torch.arange(rows.shape[0]) - offsets[rows] + 1
        rows_global = rows + start
        average_precision.index_add_(0, rows_global, j.double() / ranks.double())
        first_rank.scatter_reduce_(0, rows_global, ranks, reduce="amin", include_self=False)
        last_rank.scatter_reduce_(0, rows_global, ranks, reduce="amax", include_self=False)

    has_match = num_relevant > 0
    num_without_match = int((~has_match).sum())
    if num_without_match and not skip_queries_without_match:
        raise ValueError(
            f"{num_without_match} of {num_queries} queries have no gallery item with the same pid ({direction}); "
            "the evaluation protocol needs one for each. Pass skip_queries_without_match=True to leave them out."
        )
    if num_without_match == num_queries:
        raise ValueError(f"none of the {num_queries} queries has a gallery item with the same pid ({direction})")

    return _QueryRanks(
        query_index=has_match.nonzero().flatten(), pids=query_pids[has_match], first_rank=first_rank[has_match],
        last_rank=last_rank[has_match], num_relevant=num_relevant[has_match],
        precision_sum=average_precision[has_match], num_skipped=num_without_match, pair_scores=pair_scores,
    )


def per_query_metrics(similarity, query_pids, gallery_pids, ks: Sequence[int] = (1, 5, 10), *, direction: str = "t2i",
                      skip_queries_without_match: bool = False) -> dict[str, torch.Tensor]:
    """Each evaluated query's share of :func:`rank_metrics` (its means x 100 are that function's values):
    ``R{k}`` 1.0 if a relevant item is in the top k else 0.0, ``AP`` its average precision, ``INP``
    ``num_relevant / last_rank``, all float64 [Q'] in [0, 1], plus ``pid`` and ``query_index`` [Q']
    (int64). What paired comparisons of two models on the same queries need (:mod:`.bootstrap`)."""
    return rank_metrics_with_per_query(similarity, query_pids, gallery_pids, ks, direction=direction,
                                       skip_queries_without_match=skip_queries_without_match)[1]


def _per_query(ranks: _QueryRanks, ks: tuple) -> dict[str, torch.Tensor]:
    metrics = {f"R{k}": (ranks.first_rank <= k).double() for k in ks}
    metrics["AP"] = ranks.precision_sum / ranks.num_relevant.double()
    metrics["INP"] = ranks.num_relevant.double() / ranks.last_rank.double()
    return metrics


def _check_ks(ks) -> tuple:
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in ks):
        raise ValueError(f"`ks` must be a non-empty sequence of positive integers, got {ks!r}")
    return ks
