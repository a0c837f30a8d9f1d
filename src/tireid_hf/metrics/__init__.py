"""Retrieval metrics: :func:`rank_metrics` and :func:`per_query_metrics` (plain torch), the paired identity
bootstrap of a difference between two models (:func:`paired_bootstrap`) and the `evaluate` module.

>>> import evaluate, tireid_hf.metrics
>>> metric = evaluate.load(tireid_hf.metrics.METRIC_PATH)  # works offline: a local folder
"""

from pathlib import Path

from .bootstrap import PairedDifference, paired_bootstrap
from .retrieval import DIRECTIONS, TPR_AT_FPR, per_query_metrics, rank_metrics, score_threshold_at_fpr

METRIC_PATH = str(Path(__file__).resolve().parent / "tireid_retrieval")
"""Folder of the `evaluate` metric module ``tireid_retrieval`` (pass it to ``evaluate.load``)."""

__all__ = ["DIRECTIONS", "METRIC_PATH", "TPR_AT_FPR", "PairedDifference", "paired_bootstrap", "per_query_metrics", "rank_metrics",
           "score_threshold_at_fpr"]
