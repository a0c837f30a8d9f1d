"""The retrieval metrics' public import path: :func:`rank_metrics`, :func:`per_query_metrics`,
:func:`score_threshold_at_fpr` and the pid check. The implementation is
``metrics/tireid_retrieval/ranking.py``, in the `evaluate` module's folder so that the module needs
no tireid-hf (its docstring gives the definitions)."""

from .tireid_retrieval.ranking import (
    DIRECTIONS,
    TPR_AT_FPR,
    check_integer_pids,
    per_query_metrics,
    rank_metrics,
    rank_metrics_with_per_query,
    score_threshold_at_fpr,
)

__all__ = ["DIRECTIONS", "TPR_AT_FPR", "check_integer_pids", "per_query_metrics", "rank_metrics",
           "rank_metrics_with_per_query", "score_threshold_at_fpr"]
