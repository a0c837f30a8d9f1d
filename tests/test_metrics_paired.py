"""Per-query metrics and the paired identity bootstrap of a difference between two models."""

import itertools

import pytest
import torch

from tireid_hf.metrics.bootstrap import identity_resample_counts, paired_bootstrap
from tireid_hf.metrics.retrieval import per_query_metrics, rank_metrics


def test_per_query_metrics_by_hand_and_their_means_are_rank_metrics():
    similarity = torch.tensor([[0.9, 0.8, 0.1],   # pid 0: relevant at ranks 1 (col 0) and 3 (col 2)
                               [0.9, 0.8, 0.7],   # pid 1: relevant col 1 at rank 2
                               [0.1, 0.2, 0.3]])  # pid 0: relevant at ranks 1 (col 2) and 3 (col 0)
    query_pids, gallery_pids = [0, 1, 0], [0, 1, 0]
    per_query = per_query_metrics(similarity, query_pids, gallery_pids, ks=(1, 2))
    assert per_query["R1"].tolist() == [1.0, 0.0, 1.0]
    assert per_query["R2"].tolist() == [1.0, 1.0, 1.0]
    assert per_query["AP"].tolist() == pytest.approx([(1 + 2 / 3) / 2, 1 / 2, (1 + 2 / 3) / 2])
    assert per_query["INP"].tolist() == pytest.approx([2 / 3, 1 / 2, 2 / 3])
    assert per_query["pid"].tolist() == [0, 1, 0] and per_query["query_index"].tolist() == [0, 1, 2]
    summary = rank_metrics(similarity, query_pids, gallery_pids, ks=(1, 2))
    assert summary["R1"] == pytest.approx(100 * per_query["R1"].mean().item())
    assert summary["mAP"] == pytest.approx(100 * per_query["AP"].mean().item())
    assert summary["mINP"] == pytest.approx(100 * per_query["INP"].mean().item())


def test_per_query_metrics_leave_out_queries_without_a_match_when_asked():
    per_query = per_query_metrics(torch.rand(3, 2), [0, 5, 1], [0, 1], skip_queries_without_match=True)
    assert per_query["query_index"].tolist() == [0, 2] and per_query["pid"].tolist() == [0, 1]


def test_resample_counts_draw_every_identity_with_replacement():
    counts = identity_resample_counts(5, 400, torch.Generator().manual_seed(0))
    assert counts.shape == (400, 5) and (counts.sum(dim=1) == 5).all()
    assert (counts == 0).any() and (counts >= 2).any()  # with replacement: some left out, some repeated


def test_identical_models_differ_by_zero_and_a_constant_shift_is_exact():
    a = torch.rand(3, 40, generator=torch.Generator().manual_seed(1))
    pids = torch.arange(40) // 4
    same = paired_bootstrap(a, a, pids)
    assert (same.delta, same.low, same.high) == (0.0, 0.0, 0.0)
    shifted = paired_bootstrap(a + 0.05, a, pids)
    assert shifted.delta == pytest.approx(5.0) and shifted.low == pytest.approx(5.0) and shifted.high == pytest.approx(5.0)
    assert shifted.num_identities == 10


def test_interval_is_the_exact_bootstrap_distribution_on_a_case_small_enough_to_enumerate():
    """Two identities (queries 2 and 1): every resample is one of (u0,u0), (u0,u1), (u1,u0), (u1,u1)."""
    a, b = torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0.0, 0.0, 0.0])
    pids = torch.tensor([7, 7, 9])  # identity 7: d = (1, 0), identity 9: d = (1,)
    possible = set()
    for draw in itertools.product([0, 1], repeat=2):
        sums, sizes = (1.0, 1.0), (2, 1)
        possible.add(round(sum(sums[u] for u in draw) / sum(sizes[u] for u in draw), 12))
    assert possible == {0.5, round(2 / 3, 12), 1.0}
    result = paired_bootstrap(a, b, pids, num_resamples=4000, confidence=0.9, scale=1.0)
    assert result.delta == pytest.approx(2 / 3)
    # 5% / 95% quantiles of the exact distribution (P = 1/4, 1/2, 1/4 on 0.5, 2/3, 1)
    assert result.low == pytest.approx(0.5) and result.high == pytest.approx(1.0)


def test_seeds_are_pooled_per_query_before_resampling():
    a = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    b = torch.zeros(2, 2)
    result = paired_bootstrap(a, b, [0, 1])
    assert result.delta == pytest.approx(50.0) and result.low == pytest.approx(50.0) and result.high == pytest.approx(50.0)


def test_the_interval_narrows_with_more_identities_and_covers_the_truth():
    generator = torch.Generator().manual_seed(3)
    widths = []
    for identities in (50, 800):
        pids = torch.arange(identities * 4) // 4
        a = (torch.rand(identities * 4, generator=generator) < 0.30).double()
        b = (torch.rand(identities * 4, generator=generator) < 0.25).double()
        result = paired_bootstrap(a, b, pids, seed=1)
        assert result.low <= result.delta <= result.high
        widths.append(result.high - result.low)
    assert widths[1] < widths[0] / 2.5  # ~1/sqrt(16) = 1/4 in theory
    assert result.low < 5.0 < result.high  # the true difference is 5 points


def test_bad_arguments_name_what_is_wrong():
    with pytest.raises(ValueError, match="one shape"):
        paired_bootstrap(torch.zeros(2, 3), torch.zeros(3, 3), [0, 1, 2])
    with pytest.raises(ValueError, match="one identity per query"):
        paired_bootstrap(torch.zeros(3), torch.zeros(3), [0, 1])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(torch.zeros(3), torch.zeros(3), [0, 1, 2], confidence=1.5)
