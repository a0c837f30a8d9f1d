"""Retrieval metrics: :func:`rank_metrics` (plain torch) and the `evaluate` module over it.

>>> import evaluate, tireid_hf.metrics
>>> metric = evaluate.load(tireid_hf.metrics.METRIC_PATH)  # works offline: a local folder
"""

from pathlib import Path

from .retrieval import DIRECTIONS, rank_metrics

METRIC_PATH = str(Path(__file__).resolve().parent / "tireid_retrieval")
"""Folder of the `evaluate` metric module ``tireid_retrieval`` (pass it to ``evaluate.load``)."""

__all__ = ["DIRECTIONS", "METRIC_PATH", "rank_metrics"]
