"""rank_metrics against a brute-force reference written here, on random and hand-made cases, and as
properties over problems hypothesis draws (random shapes, ties, duplicate pids, both directions)."""

from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import tireid_hf.metrics.tireid_retrieval.ranking as retrieval  # the implementation (its chunk sizes are patched)
from tireid_hf.metrics import TPR_AT_FPR, rank_metrics, score_threshold_at_fpr
from tireid_hf.metrics.retrieval import per_query_metrics, rank_metrics_with_per_query


def reference_threshold_and_tpr(similarity, query_pids, gallery_pids, fpr):
    """Straight from the definition: every score value of the matrix is a candidate threshold (a pair
    is accepted when score >= threshold), the smallest one whose false-positive rate over all pairs is
    <= fpr wins (FPR = 0 without negatives); with none, the next value of the dtype above the highest
    score. Returns ``(threshold, 100 * accepted positives / positives)``."""
    scores = np.asarray(similarity).ravel()
    positive = (np.asarray(query_pids)[:, None] == np.asarray(gallery_pids)[None, :]).ravel()
    num_negative = int((~positive).sum())
    allowed = [t for t in np.unique(scores)
               if num_negative == 0 or ((scores >= t) & ~positive).sum() / num_negative <= fpr]
    threshold = min(allowed) if allowed else np.nextafter(scores.max(), np.inf)
    accepted = scores >= threshold
    return float(threshold), 100 * (accepted & positive).sum() / max(positive.sum(), 1)


def reference_metrics(similarity, query_pids, gallery_pids, ks=(1, 5, 10), all_pairs=None):
    """Straight from the definitions: stable argsort of every row, then precision at every hit; the
    TPR keys over the pairs of ``all_pairs`` (a ``(similarity, query_pids, gallery_pids)``, by default
    the problem given)."""
    similarity = np.asarray(similarity, dtype=np.float64)
    query_pids, gallery_pids = np.asarray(query_pids), np.asarray(gallery_pids)
    hits = {k: [] for k in ks}
    average_precisions, inverse_negative_penalties = [], []
    for row, pid in zip(similarity, query_pids):
        order = np.argsort(-row, kind="stable")
        ranks = np.nonzero(gallery_pids[order] == pid)[0] + 1  # 1-based ranks of the relevant items
        for k in ks:
            hits[k].append(ranks[0] <= k)
        precisions = np.arange(1, len(ranks) + 1) / ranks
        average_precisions.append(precisions.sum() / len(ranks))
        inverse_negative_penalties.append(len(ranks) / ranks[-1])
    results = {f"R{k}": 100 * np.mean(hits[k]) for k in ks}
    results["mAP"] = 100 * np.mean(average_precisions)
    results["mINP"] = 100 * np.mean(inverse_negative_penalties)
    for key, fpr in TPR_AT_FPR.items():
        results[key] = reference_threshold_and_tpr(*(all_pairs or (similarity, query_pids, gallery_pids)), fpr)[1]
    results["num_queries"] = len(query_pids)
    return results


def assert_same(got, expected):
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key


def random_problem(seed, num_queries=60, num_gallery=45, num_ids=12, integer_scores=False):
    rng = np.random.default_rng(seed)
    gallery_pids = rng.integers(0, num_ids, num_gallery)
    query_pids = rng.choice(gallery_pids, num_queries)
    if integer_scores:  # many ties
        similarity = rng.integers(0, 4, (num_queries, num_gallery)).astype(np.float32)
    else:
        similarity = rng.standard_normal((num_queries, num_gallery)).astype(np.float32)
    return similarity, query_pids, gallery_pids


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("integer_scores", [False, True])
def test_random_against_reference(seed, integer_scores):
    similarity, query_pids, gallery_pids = random_problem(seed, integer_scores=integer_scores)
    assert_same(rank_metrics(similarity, query_pids, gallery_pids), reference_metrics(similarity, query_pids, gallery_pids))


@pytest.mark.parametrize("seed", range(2))
def test_sorting_path_and_small_chunks_agree(monkeypatch, seed):
    similarity, query_pids, gallery_pids = random_problem(seed, integer_scores=True)
    expected = reference_metrics(similarity, query_pids, gallery_pids)
    monkeypatch.setattr(retrieval, "_CHUNK_ELEMENTS", 100)  # 2 queries per chunk
    assert_same(rank_metrics(similarity, query_pids, gallery_pids, show_progress=True), expected)
    monkeypatch.setattr(retrieval, "_MAX_RELEVANT_FOR_COUNTING", 0)  # every chunk sorts
    assert_same(rank_metrics(similarity, query_pids, gallery_pids), expected)


def test_many_relevant_items_per_query_uses_sorting():
    similarity, query_pids, gallery_pids = random_problem(7, num_queries=20, num_gallery=200, num_ids=2, integer_scores=True)
    assert np.bincount(gallery_pids).min() > retrieval._MAX_RELEVANT_FOR_COUNTING
    assert_same(rank_metrics(similarity, query_pids, gallery_pids), reference_metrics(similarity, query_pids, gallery_pids))


def test_hand_made_several_relevant_items():
    # Ranked gallery pids: 1 0 1 0 1 -> relevant ranks 1, 3, 5.
    similarity = [[0.9, 0.8, 0.7, 0.6, 0.5]]
    results = rank_metrics(similarity, [1], [1, 0, 1, 0, 1], ks=(1, 2, 5))
    assert results["R1"] == 100.0 and results["R2"] == 100.0 and results["R5"] == 100.0
    assert results["mAP"] == pytest.approx(100 * (1 / 1 + 2 / 3 + 3 / 5) / 3)
    assert results["mINP"] == pytest.approx(100 * 3 / 5)
    assert results["num_queries"] == 1


def test_hand_made_relevant_item_at_last_rank():
    similarity = torch.tensor([[0.1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15, 0.12, 0.11]])
    results = rank_metrics(similarity, [3], [3] + [0] * 11)  # the only relevant item ranks 12th of 12
    assert (results["R1"], results["R5"], results["R10"]) == (0.0, 0.0, 0.0)
    assert results["mAP"] == pytest.approx(100 / 12)
    assert results["mINP"] == pytest.approx(100 / 12)


def test_ties_keep_gallery_order():
    # All scores equal: the ranking is the gallery order, so the relevant items rank 2 and 4.
    results = rank_metrics(np.zeros((1, 4)), [5], [0, 5, 0, 5], ks=(1, 2))
    assert results["R1"] == 0.0 and results["R2"] == 100.0
    assert results["mAP"] == pytest.approx(100 * (1 / 2 + 2 / 4) / 2)
    assert results["mINP"] == pytest.approx(100 * 2 / 4)
    # A tie between a relevant and an irrelevant item: the earlier gallery item wins.
    assert rank_metrics([[0.5, 0.5, 0.1]], [1], [0, 1, 2], ks=(1,))["R1"] == 0.0
    assert rank_metrics([[0.5, 0.5, 0.1]], [1], [1, 0, 2], ks=(1,))["R1"] == 100.0


def test_k_at_least_gallery_size_counts_every_query():
    results = rank_metrics([[0.1, 0.9, 0.5]], [0], [0, 1, 2], ks=(1, 3, 10))
    assert (results["R1"], results["R3"], results["R10"]) == (0.0, 100.0, 100.0)


@pytest.mark.parametrize("convert", [
    lambda x: torch.from_numpy(x), lambda x: x.astype(np.float64), lambda x: torch.from_numpy(x).half(),
    lambda x: x.tolist(),
])
def test_input_types(convert):
    similarity, query_pids, gallery_pids = random_problem(3)
    converted = convert(similarity)
    expected_scores = np.asarray(converted.float() if isinstance(converted, torch.Tensor) else converted, dtype=np.float64)
    got = rank_metrics(converted, torch.as_tensor(query_pids), list(gallery_pids))
    assert_same(got, reference_metrics(expected_scores, query_pids, gallery_pids))


def test_integer_scores():
    similarity, query_pids, gallery_pids = random_problem(4, integer_scores=True)
    got = rank_metrics(similarity.astype(np.int64), query_pids, gallery_pids)
    assert_same(got, reference_metrics(similarity, query_pids, gallery_pids))


def test_i2t_is_t2i_of_the_transpose():
    similarity, text_pids, image_pids = random_problem(5, num_queries=40, num_gallery=30, num_ids=8)
    image_pids[: len(set(text_pids))] = sorted(set(text_pids))  # every image pid has a text too
    text_pids = np.concatenate([text_pids, image_pids])
    similarity = np.random.default_rng(0).standard_normal((len(text_pids), len(image_pids))).astype(np.float32)
    got = rank_metrics(similarity, text_pids, image_pids, direction="i2t")
    assert_same(got, reference_metrics(similarity.T, image_pids, text_pids))


def test_skip_queries_without_match():
    similarity, query_pids, gallery_pids = random_problem(6)
    query_pids = query_pids.copy()
    query_pids[[3, 10, 11]] = 999  # no gallery item has pid 999
    with pytest.raises(ValueError, match="3 of 60 queries have no gallery item with the same pid \\(t2i\\); the evaluation "
                       "protocol needs one for each. Pass skip_queries_without_match=True to leave them out."):
        rank_metrics(similarity, query_pids, gallery_pids)
    got = rank_metrics(similarity, query_pids, gallery_pids, skip_queries_without_match=True)
    keep = query_pids != 999
    expected = reference_metrics(similarity[keep], query_pids[keep], gallery_pids,
                                 all_pairs=(similarity, query_pids, gallery_pids))
    expected["num_skipped_queries"] = 3
    assert_same(got, expected)
    assert got["num_queries"] == 57


def test_skip_reports_zero_when_enabled():
    similarity, query_pids, gallery_pids = random_problem(1)
    assert rank_metrics(similarity, query_pids, gallery_pids, skip_queries_without_match=True)["num_skipped_queries"] == 0


@pytest.mark.parametrize("similarity, query_pids, gallery_pids, error, message", [
    (np.zeros((3, 4)), [0, 1], [0, 1, 2, 3], ValueError, r"query_pids.*shape \[3\] \(one per row of `similarity`\), got \[2\]"),
    (np.zeros((3, 4)), [0, 1, 2], [0, 1, 2], ValueError, r"gallery_pids.*shape \[4\] \(one per column of `similarity`\), got \[3\]"),
    (np.zeros(4), [0], [0, 1, 2, 3], ValueError, r"similarity.*\[num_queries, num_gallery\].*got \[4\]"),
    (np.zeros((2, 0)), [0, 1], [], ValueError, r"gallery is empty: `similarity` has shape \[2, 0\] \(t2i\)"),
    (np.zeros((0, 3)), [], [0, 1, 2], ValueError, r"no queries: `similarity` has shape \[0, 3\] \(t2i\)"),
    (np.array([[0.1, np.nan]]), [0], [0, 1], ValueError, r"NaN or inf.*row 0, column 1"),
    (np.array([[0.1, 0.2], [np.inf, 0.0]]), [0, 1], [0, 1], ValueError, r"NaN or inf.*row 1, column 0"),
    (np.zeros((1, 2)), [0.5], [0, 1], TypeError, "`query_pids` must hold integer pids"),
    (np.zeros((1, 2)), [0], [True, False], TypeError, r"`gallery_pids` must hold integer pids, got dtype torch.bool"),
    ([["a", "b"]], [0], [0, 1], TypeError, r"`similarity` must be a torch tensor, a numpy array or a list, got list"),
    (np.zeros((1, 2)), ["a"], [0, 1], TypeError, r"`query_pids` must hold integer pids, got \['a'\]: map each identity to an integer first"),
    # the first 3 of more than 3 are shown, then "..."; exactly 3 are shown whole
    (np.zeros((5, 2)), list("abcde"), [0, 1], TypeError, r"`query_pids` must hold integer pids, got \['a', 'b', 'c', \.\.\.\]: map"),
    (np.zeros((3, 2)), list("abc"), [0, 1], TypeError, r"`query_pids` must hold integer pids, got \['a', 'b', 'c'\]: map"),
    (np.zeros((4, 2)), list("abcd"), [0, 1], TypeError, r"`query_pids` must hold integer pids, got \['a', 'b', 'c', \.\.\.\]: map"),
    # numbers that are not integers torch can hold (numpy datetimes): the conversion's error names the argument
    (np.zeros((1, 2)), [np.datetime64("2020-01-01")], [0, 1], TypeError,
     r"`query_pids` must be a torch tensor, a numpy array or a list, got list"),
    (np.zeros((1, 2), dtype=bool), [0], [0, 1], TypeError, "real scores"),
    (np.zeros((2, 2)), [7, 8], [0, 1], ValueError, "none of the 2 queries"),
])
def test_bad_input(similarity, query_pids, gallery_pids, error, message):
    skip = message.startswith("none")
    with pytest.raises(error, match=message):
        rank_metrics(similarity, query_pids, gallery_pids, skip_queries_without_match=skip)


def test_finite_scores_whose_sum_overflows_are_accepted():
    # float32 3e38 + 3e38 = inf: the quick finiteness check (the sum) fails, the full check must not
    results = rank_metrics(np.full((2, 3), 3e38, dtype=np.float32), [0, 1], [0, 1, 1], ks=(1,))
    assert results["R1"] == 50.0  # all tied: gallery order, query 0 finds item 0 first, query 1 does not


def test_no_progress_bar_unless_asked(capsys):
    similarity, query_pids, gallery_pids = random_problem(2)
    rank_metrics(similarity, query_pids, gallery_pids)
    assert capsys.readouterr().err == ""
    rank_metrics(similarity, query_pids, gallery_pids, show_progress=True)
    bar = capsys.readouterr().err
    assert "rank metrics (t2i)" in bar and "chunk/s" in bar


def test_nan_position_is_given_in_the_matrix_passed_in():
    similarity = np.zeros((3, 2))
    similarity[2, 1] = np.nan
    with pytest.raises(ValueError, match="row 2, column 1"):
        rank_metrics(similarity, [0, 1, 1], [0, 1], direction="i2t")


def test_bad_options():
    with pytest.raises(ValueError, match="direction"):
        rank_metrics([[1.0]], [0], [0], direction="t2t")
    for ks in [(), (0,), (1.5,)]:
        with pytest.raises(ValueError, match="ks"):
            rank_metrics([[1.0]], [0], [0], ks=ks)


# ----------------------------------------------------------------------------- properties (hypothesis)
# Scores on a coarse grid make ties common; pids from a few identities make duplicates (and queries
# without a match) common.
GRID_SCORES = st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0])
REAL_SCORES = st.floats(-1.0, 1.0, width=32, allow_nan=False)


@st.composite
def retrieval_problems(draw, scores=None, max_queries=12, max_gallery=40):
    """``(similarity [Q, G] float32, query_pids [Q], gallery_pids [G])`` with the pids of ``num_ids``
    identities; a query pid may be missing from the gallery."""
    num_queries, num_gallery = draw(st.integers(1, max_queries)), draw(st.integers(1, max_gallery))
    num_ids = draw(st.integers(1, 6))
    scores = scores if scores is not None else draw(st.sampled_from([GRID_SCORES, REAL_SCORES]))
    similarity = draw(arrays(np.float32, (num_queries, num_gallery), elements=scores))
    query_pids = np.array(draw(st.lists(st.integers(0, num_ids), min_size=num_queries, max_size=num_queries)))
    gallery_pids = np.array(draw(st.lists(st.integers(0, num_ids - 1), min_size=num_gallery, max_size=num_gallery)))
    return similarity, query_pids, gallery_pids


def as_queries(similarity, text_pids, image_pids, direction):
    """The problem as [queries, gallery] scores with query and gallery pids, for the reference."""
    return (similarity, text_pids, image_pids) if direction == "t2i" else (similarity.T, image_pids, text_pids)


@given(problem=retrieval_problems(), direction=st.sampled_from(["t2i", "i2t"]), skip=st.booleans(),
       ks=st.lists(st.integers(1, 45), min_size=1, max_size=4, unique=True),
       chunk_elements=st.sampled_from([2**20, 1, 7, 60]), max_relevant_for_counting=st.sampled_from([32, 0, 2]))
def test_property_rank_metrics_equal_the_brute_force_reference(problem, direction, skip, ks, chunk_elements,
                                                               max_relevant_for_counting):
    similarity, text_pids, image_pids = problem
    scores, query_pids, gallery_pids = as_queries(similarity, text_pids, image_pids, direction)
    matched = np.isin(query_pids, gallery_pids)
    with mock.patch.object(retrieval, "_CHUNK_ELEMENTS", chunk_elements), \
            mock.patch.object(retrieval, "_MAX_RELEVANT_FOR_COUNTING", max_relevant_for_counting):
        if not matched.any():
            with pytest.raises(ValueError, match="none of the|have no gallery item"):
                rank_metrics(similarity, text_pids, image_pids, ks, direction=direction, skip_queries_without_match=skip)
            return
        if not matched.all() and not skip:
            with pytest.raises(ValueError, match=f"{(~matched).sum()} of {len(query_pids)} queries have no gallery item"):
                rank_metrics(similarity, text_pids, image_pids, ks, direction=direction)
            return
        got = rank_metrics(similarity, text_pids, image_pids, ks, direction=direction, skip_queries_without_match=skip)
    expected = reference_metrics(scores[matched], query_pids[matched], gallery_pids, ks,
                                 all_pairs=(scores, query_pids, gallery_pids))
    if skip:
        expected["num_skipped_queries"] = int((~matched).sum())
    assert_same(got, expected)


def without_pair_keys(metrics):
    """The rank keys of ``metrics`` (those that depend on the ranking, and so on how ties are broken)."""
    return {key: value for key, value in metrics.items() if key not in TPR_AT_FPR}


def tie_broken_by(order, scores, axis):
    """``scores`` (float32 on the 0.5 grid) with ties among gallery items (along ``axis``) broken in
    favour of the item that comes first in ``order``: each item loses ``0.4 * position / size``,
    less than any gap between distinct scores, so only ties change."""
    position = np.empty(len(order))
    position[order] = np.arange(len(order))
    penalty = 0.4 * position / len(order)
    return scores.astype(np.float64) - (penalty[None, :] if axis == 1 else penalty[:, None])


@given(problem=retrieval_problems(scores=GRID_SCORES), direction=st.sampled_from(["t2i", "i2t"]), data=st.data())
def test_property_permuting_the_gallery_only_changes_how_ties_are_broken(problem, direction, data):
    # Documented rule: equal scores keep gallery order. So the metrics of a permuted gallery are those of
    # the original gallery with its ties broken in the permuted order, and equal to the original metrics
    # when a row has no ties.
    similarity, text_pids, image_pids = problem
    gallery_axis = 1 if direction == "t2i" else 0
    gallery_size = similarity.shape[gallery_axis]
    order = np.array(data.draw(st.permutations(range(gallery_size)), label="gallery order"))
    options = dict(ks=(1, 2, 5), direction=direction, skip_queries_without_match=True)
    try:
        original = rank_metrics(similarity, text_pids, image_pids, **options)
    except ValueError:  # no query has a match: nothing to compare
        return
    if direction == "t2i":
        permuted = rank_metrics(similarity[:, order], text_pids, image_pids[order], **options)
    else:
        permuted = rank_metrics(similarity[order], text_pids[order], image_pids, **options)
    tie_broken = rank_metrics(tie_broken_by(order, similarity, gallery_axis), text_pids, image_pids, **options)
    assert_same(without_pair_keys(permuted), without_pair_keys(tie_broken))
    # the TPR keys are decisions on pairs, not a ranking: a permutation changes none of them
    assert_same({key: permuted[key] for key in TPR_AT_FPR}, {key: original[key] for key in TPR_AT_FPR})
    queries_axis_scores = similarity if direction == "t2i" else similarity.T
    if all(len(set(row)) == len(row) for row in queries_axis_scores.tolist()):
        assert_same(permuted, original)


@given(problem=retrieval_problems(), direction=st.sampled_from(["t2i", "i2t"]), data=st.data())
def test_property_permuting_the_queries_changes_nothing(problem, direction, data):
    similarity, text_pids, image_pids = problem
    query_axis = 0 if direction == "t2i" else 1
    order = np.array(data.draw(st.permutations(range(similarity.shape[query_axis])), label="query order"))
    options = dict(ks=(1, 3), direction=direction, skip_queries_without_match=True)
    try:
        original = rank_metrics(similarity, text_pids, image_pids, **options)
    except ValueError:  # no query has a match
        return
    if direction == "t2i":
        permuted = rank_metrics(similarity[order], text_pids[order], image_pids, **options)
    else:
        permuted = rank_metrics(similarity[:, order], text_pids, image_pids[order], **options)
    assert_same(permuted, original)


def test_rank_metrics_with_per_query_defaults_are_those_of_rank_metrics(capsys):
    """Text-to-image, no progress bar, and a query without a match is an error unless skipped."""
    similarity, query_pids, gallery_pids = random_problem(3)
    metrics, _ = rank_metrics_with_per_query(similarity, query_pids, gallery_pids)
    assert metrics == rank_metrics(similarity, query_pids, gallery_pids, direction="t2i")
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match=r"1 of 2 queries have no gallery item with the same pid \(t2i\)"):
        rank_metrics_with_per_query(np.zeros((2, 2)), [0, 7], [0, 1])


def test_per_query_pids_are_int64_whatever_integer_type_comes_in():
    similarity, query_pids, gallery_pids = random_problem(4)
    per_query = per_query_metrics(similarity, query_pids.astype(np.int32), gallery_pids.astype(np.int16))
    assert per_query["pid"].dtype == torch.int64
    torch.testing.assert_close(per_query["AP"], per_query_metrics(similarity, query_pids, gallery_pids)["AP"])


# ----------------------------------------------------------------------------- same-person decisions (TPR@FPR)
def one_query(positive_scores, negative_scores):
    """One query (pid 0) against its positives (pid 0) then its negatives (pid 1), float64 scores."""
    scores = np.array([list(positive_scores) + list(negative_scores)], dtype=np.float64)
    return scores, [0], [0] * len(positive_scores) + [1] * len(negative_scores)


def test_tpr_at_fpr_hand_made():
    # 200 negatives: FPR 1e-2 allows 2 false positives, 1e-3 none. Negatives sorted 0.9, 0.8, 0.6, 0.1 ...
    problem = one_query([0.95, 0.85, 0.75, 0.55], [0.9, 0.8, 0.6] + [0.1] * 197)
    results = rank_metrics(*problem, ks=(1,))
    # 1e-2: the third negative (0.6) must be rejected, so the smallest score above it, 0.75, is the threshold
    assert score_threshold_at_fpr(*problem, fpr=1e-2) == 0.75 and results["TPR@FPR=1e-2"] == 75.0
    # 1e-3: the first negative (0.9) must be rejected: threshold 0.95, one positive of four
    assert score_threshold_at_fpr(*problem, fpr=1e-3) == 0.95 and results["TPR@FPR=1e-3"] == 25.0


def test_tpr_at_fpr_ties_are_accepted_or_rejected_together():
    # A positive tied with the negative that must be rejected is rejected with it (score >= threshold).
    problem = one_query([0.9, 0.5], [0.5] + [0.1] * 99)
    assert score_threshold_at_fpr(*problem, fpr=1e-3) == 0.9 and rank_metrics(*problem)["TPR@FPR=1e-3"] == 50.0
    # 1e-2 allows one of the 100 negatives: the threshold 0.5 accepts the negative 0.5 and both positives
    assert score_threshold_at_fpr(*problem, fpr=1e-2) == 0.5 and rank_metrics(*problem)["TPR@FPR=1e-2"] == 100.0
    # Two tied negatives where one is allowed: accepting either accepts both, so neither is accepted.
    problem = one_query([0.8, 0.7, 0.6], [0.7, 0.7] + [0.1] * 98)
    assert score_threshold_at_fpr(*problem, fpr=1e-2) == 0.8
    assert rank_metrics(*problem)["TPR@FPR=1e-2"] == pytest.approx(100 / 3)


def test_tpr_at_fpr_without_negatives_accepts_every_pair():
    problem = (np.array([[0.3, 0.2, 0.9]]), [4], [4, 4, 4])
    assert score_threshold_at_fpr(*problem, fpr=0.0) == 0.2  # the smallest score: no pair can be a false positive
    assert rank_metrics(*problem)["TPR@FPR=1e-3"] == 100.0


def test_tpr_at_fpr_below_one_over_the_negatives_rejects_every_negative():
    # 5 negatives: 1e-2 < 1/5 allows none. No score lies above the highest negative (0.5), so the threshold
    # is the next float32 above it, which accepts nothing.
    similarity = np.array([[0.1, 0.5, 0.2, 0.3, 0.4, 0.0]], dtype=np.float32)
    pids = ([0], [0, 1, 1, 1, 1, 1])
    threshold = score_threshold_at_fpr(similarity, *pids, fpr=1e-2)
    assert threshold == float(np.nextafter(np.float32(0.5), np.float32(1))) and not (similarity >= threshold).any()
    assert not (torch.from_numpy(similarity) >= threshold).any()  # also in the scores' own dtype
    assert rank_metrics(similarity, *pids)["TPR@FPR=1e-2"] == 0.0
    # above the positive, the highest negative (0.5) is cut and 0.9 is the threshold
    similarity[0, 0] = 0.9
    assert score_threshold_at_fpr(similarity, *pids, fpr=1e-2) == pytest.approx(0.9)
    assert rank_metrics(similarity, *pids)["TPR@FPR=1e-2"] == 100.0


def test_fpr_of_one_accepts_every_pair_and_the_rate_is_a_float_division():
    problem = one_query([0.5], [0.01 * i for i in range(100)])  # negatives 0.00 ... 0.99
    assert score_threshold_at_fpr(*problem, fpr=1.0) == 0.0
    # 29 / 100 == 0.29 as floats, though 0.29 * 100 < 29: the 29 highest negatives (0.71 ...) are allowed
    assert score_threshold_at_fpr(*problem, fpr=0.29) == 0.71


def test_tpr_keys_are_the_same_in_both_directions_and_count_all_pairs():
    similarity, query_pids, gallery_pids = random_problem(8, num_queries=30, num_gallery=30, num_ids=6)
    gallery_pids[:6] = np.arange(6)
    query_pids = np.concatenate([query_pids, [99]])  # a query without a match: its pairs are negatives
    similarity = np.concatenate([similarity, np.full((1, 30), 5.0, dtype=np.float32)])
    t2i = rank_metrics(similarity, query_pids, gallery_pids, skip_queries_without_match=True)
    i2t = rank_metrics(similarity, query_pids, gallery_pids, direction="i2t", skip_queries_without_match=True)
    for key, fpr in TPR_AT_FPR.items():
        assert t2i[key] == i2t[key] == pytest.approx(reference_threshold_and_tpr(similarity, query_pids, gallery_pids, fpr)[1])
    # the skipped query's 30 negatives at 5.0, above every other score, are more false positives than 1e-2
    # of the 900-odd negatives allow: counted, they leave no threshold that accepts a positive
    assert rank_metrics(similarity[:-1], query_pids[:-1], gallery_pids)["TPR@FPR=1e-2"] > 0.0
    assert t2i["TPR@FPR=1e-2"] == 0.0
    assert score_threshold_at_fpr(similarity, query_pids, gallery_pids, 1e-2) == float(np.nextafter(np.float32(5), 6))


@pytest.mark.parametrize("fpr", [-0.1, 1.5, float("nan"), "0.1", True, None])
def test_score_threshold_refuses_a_rate_outside_zero_to_one(fpr):
    with pytest.raises(ValueError, match=r"`fpr` must be a false-positive rate in \[0, 1\], got"):
        score_threshold_at_fpr([[0.1, 0.2]], [0], [0, 1], fpr)


def test_score_threshold_checks_its_problem_like_rank_metrics():
    with pytest.raises(ValueError, match=r"NaN or inf.*row 0, column 1"):
        score_threshold_at_fpr(np.array([[0.1, np.nan]]), [0], [0, 1], 0.1)
    with pytest.raises(ValueError, match=r"gallery_pids.*shape \[2\]"):
        score_threshold_at_fpr(np.zeros((1, 2)), [0], [0], 0.1)
    # queries without a match are fine: a threshold needs negatives only
    assert score_threshold_at_fpr(np.array([[0.1, 0.7]]), [5], [0, 1], 0.0) == float(np.nextafter(0.7, 1.0))


@given(problem=retrieval_problems(), fpr=st.sampled_from([0.0, 1e-3, 1e-2, 0.05, 0.3, 1.0]),
       chunk_elements=st.sampled_from([2**20, 1, 7, 60]))
def test_property_threshold_equals_the_brute_force_reference_and_gives_the_reported_tpr(problem, fpr, chunk_elements):
    similarity, query_pids, gallery_pids = problem
    with mock.patch.object(retrieval, "_CHUNK_ELEMENTS", chunk_elements):
        threshold = score_threshold_at_fpr(similarity, query_pids, gallery_pids, fpr)
        assert threshold == reference_threshold_and_tpr(similarity, query_pids, gallery_pids, fpr)[0]
        positive = query_pids[:, None] == gallery_pids[None, :]
        key = {value: key for key, value in TPR_AT_FPR.items()}.get(fpr)
        if key and positive.any():  # the reported TPR is the share of positives accepted at that threshold
            reported = rank_metrics(similarity, query_pids, gallery_pids, skip_queries_without_match=True)[key]
            assert reported == pytest.approx(100 * (similarity[positive] >= threshold).mean(), abs=1e-9)
