"""Paired bootstrap confidence intervals for the difference of two models on the same test queries.

The unit resampled is the test IDENTITY (queries of one identity share its images, so they are not
independent): each resample draws the split's identities with replacement, and a query counts as many
times as its identity was drawn. Both models see the same resample (paired), and several seeds per
model are pooled by averaging each query's difference over the seeds first::

    d_q      = mean_s (a_sq - b_sq)                        per-query difference, pooled over seeds
    delta_r  = sum_u c_ru D_u / sum_u c_ru N_u             resample r: c_ru copies of identity u,
                                                           D_u = sum_{q in u} d_q, N_u = #queries of u
    interval = the (1 - confidence)/2 and (1 + confidence)/2 quantiles of delta_r (percentile bootstrap)

``a`` and ``b`` are per-query values from :func:`tireid_hf.metrics.retrieval.per_query_metrics`
(``R1``: 0/1, ``AP`` in [0, 1]); the point estimate is the plain mean of ``d_q``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PairedDifference:
    """``delta``: mean difference a - b (in the units given, e.g. x100 for percentages); ``low`` /
    ``high``: the bootstrap interval; ``confidence``; ``num_resamples``; ``num_identities``."""

    delta: float
    low: float
    high: float
    confidence: float
    num_resamples: int
    num_identities: int

    def __str__(self) -> str:
        return f"{self.delta:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def identity_resample_counts(num_identities: int, num_resamples: int, generator: torch.Generator) -> torch.Tensor:
    """[num_resamples, num_identities] int64: how often each identity is drawn in each resample
    (``num_identities`` draws with replacement per resample; every row sums to ``num_identities``)."""
    draws = torch.randint(num_identities, (num_resamples, num_identities), generator=generator)
    counts = torch.zeros(num_resamples, num_identities, dtype=torch.int64)
    return counts.scatter_add_(1, draws, torch.ones_like(draws))


def paired_bootstrap(a, b, pids, *, num_resamples: int = 2000, confidence: float = 0.95, seed: int = 0,
                     scale: float = 100.0) -> PairedDifference:
    """The difference ``a - b`` of two models' per-query values with its paired identity bootstrap interval.

    Args:
        a / b: [Q] or [S, Q] per-query values of the two models (S seeds each, the same Q queries in
            the same order; seed s of ``a`` is paired with seed s of ``b``).
        pids: [Q] the identity of each query.
        num_resamples / confidence / seed: the bootstrap.
        scale: multiplies the result (100: per-query fractions -> percentage points).
    """
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    a, b = (a.unsqueeze(0) if a.dim() == 1 else a), (b.unsqueeze(0) if b.dim() == 1 else b)
    pids = torch.as_tensor(pids)
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"a and b must both be [queries] or [seeds, queries] of one shape, got {list(a.shape)} and {list(b.shape)}")
    if pids.shape != (a.shape[1],):
        raise ValueError(f"pids must have one identity per query ({a.shape[1]}), got shape {list(pids.shape)}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}")
    difference = (a - b).mean(dim=0)  # [Q], pooled over seeds
    _, identity = torch.unique(pids, return_inverse=True)
    num_identities = int(identity.max()) + 1
    per_identity_sum = torch.zeros(num_identities, dtype=torch.float64).index_add_(0, identity, difference)
    per_identity_count = torch.bincount(identity, minlength=num_identities).double()
    counts = identity_resample_counts(num_identities, num_resamples, torch.Generator().manual_seed(seed)).double()
    deltas = (counts @ per_identity_sum) / (counts @ per_identity_count)
    tail = (1.0 - confidence) / 2
    low, high = torch.quantile(deltas, torch.tensor([tail, 1.0 - tail], dtype=torch.float64)).tolist()
    return PairedDifference(delta=scale * difference.mean().item(), low=scale * low, high=scale * high,
                            confidence=confidence, num_resamples=num_resamples, num_identities=num_identities)
