"""The `evaluate` module is a thin wrapper: same numbers as rank_metrics, loaded offline."""

import re

import evaluate
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tireid_hf.metrics
from test_metrics import retrieval_problems
from tireid_hf.metrics import TPR_AT_FPR, rank_metrics


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(tireid_hf.metrics.METRIC_PATH)


def test_identical_numbers(metric):
    rng = np.random.default_rng(0)
    gallery_pids = rng.integers(0, 10, 40)
    query_pids = rng.choice(gallery_pids, 50)
    similarity = rng.standard_normal((50, 40)).astype(np.float32)
    expected = rank_metrics(similarity, query_pids, gallery_pids)
    got = metric.compute(predictions=similarity, references=query_pids, gallery_pids=gallery_pids)
    assert got == expected
    got = metric.compute(predictions=similarity.tolist(), references=query_pids.tolist(), gallery_pids=gallery_pids.tolist(), ks=[1, 3])
    assert got == rank_metrics(similarity, query_pids, gallery_pids, ks=(1, 3))


def test_incremental_batches_and_skipping(metric):
    similarity = np.array([[0.9, 0.5, 0.1], [0.2, 0.3, 0.8], [0.4, 0.6, 0.2]], dtype=np.float32)
    metric.add_batch(predictions=similarity[:2], references=[0, 1])
    metric.add_batch(predictions=similarity[2:], references=[5])
    got = metric.compute(gallery_pids=[0, 0, 1], skip_queries_without_match=True)
    assert got == rank_metrics(similarity, [0, 1, 5], [0, 0, 1], skip_queries_without_match=True)
    assert got["num_skipped_queries"] == 1


def test_errors(metric):
    with pytest.raises(ValueError, match="gallery_pids"):
        metric.compute(predictions=[[0.1, 0.2]], references=[0])
    with pytest.raises(ValueError, match="1 of 1 queries have no gallery item"):
        metric.compute(predictions=[[0.1, 0.2]], references=[3], gallery_pids=[0, 1])
    with pytest.raises(ValueError, match="row lengths"):
        metric.compute(predictions=[[0.1, 0.2], [0.3]], references=[0, 1], gallery_pids=[0, 1])


@settings(max_examples=30)
@given(problem=retrieval_problems(), skip=st.booleans(), ks=st.lists(st.integers(1, 45), min_size=1, max_size=3, unique=True))
def test_property_module_equals_rank_metrics(metric, problem, skip, ks):
    """Random problems (ties, duplicate pids, queries without a match): the same keys and numbers,
    TPR@FPR included, or the same error."""
    similarity, query_pids, gallery_pids = problem
    try:
        expected = rank_metrics(similarity, query_pids, gallery_pids, ks=ks, skip_queries_without_match=skip)
    except ValueError as error:
        with pytest.raises(ValueError, match=re.escape(str(error))):
            metric.compute(predictions=similarity, references=query_pids, gallery_pids=gallery_pids, ks=ks,
                           skip_queries_without_match=skip)
        return
    got = metric.compute(predictions=similarity, references=query_pids, gallery_pids=gallery_pids, ks=ks,
                         skip_queries_without_match=skip)
    assert got == expected and set(TPR_AT_FPR) <= set(got)
