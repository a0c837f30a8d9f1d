"""When a model's second stage may re-rank the test split: two gates, both decided on VALIDATION only.

1. :func:`rerank_refusal`: the matching head must beat a constant answer on held-out pairs;
2. :func:`rerank_gain_refusal`: re-ranking must raise the first stage's validation R@1.

:func:`second_stage_results` applies them to a trained model and evaluates what they allow.
"""

from __future__ import annotations

import math

from .evaluation import evaluate_split

__all__ = ["rerank_gain_refusal", "rerank_refusal", "second_stage_results"]


def rerank_refusal(validation_metrics: dict) -> str | None:
    """Why the second stage must not re-rank, or None when it may.

    A matching head re-ranks only when, on the validation split's held-out positive / hardest-negative
    pairs (:func:`~tireid_hf.retrieval.matching_accuracy`), its balanced accuracy beats the 0.5 of a
    constant answer by more than two standard errors, ``0.5 + 2 * 0.5 / sqrt(2 Q)`` for Q queries:
    otherwise re-ranking would re-order the top-k by noise. Metrics without ``itm/accuracy`` (no
    matching head measured) are not refused.
    """
    accuracy, queries = validation_metrics.get("itm/accuracy"), validation_metrics.get("itm/num_queries")
    if accuracy is None or not queries:
        return None
    threshold = 0.5 + 2 * 0.5 / math.sqrt(2 * queries)
    if accuracy > threshold:
        return None
    return (f"the matching head's balanced accuracy on validation pairs is {accuracy:.3f}, not above "
            f"{threshold:.3f} (a constant answer gets 0.5; {int(queries)} queries): it would re-rank by noise")


def rerank_gain_refusal(validation_metrics: dict, reranked_metrics: dict, rerank_k: int) -> str | None:
    """Why the second stage must not re-rank test although its head beats chance, or None when it may:
    re-ranking each query's top ``rerank_k`` must RAISE validation ``t2i/R1`` over the first stage's
    (``reranked_metrics["t2i/R1"] > validation_metrics["t2i/R1"]``)."""
    plain, reranked = validation_metrics["t2i/R1"], reranked_metrics["t2i/R1"]
    if reranked > plain:
        return None
    return f"re-ranking each query's top {rerank_k} does not raise validation R@1 ({plain:.2f} -> {reranked:.2f})"


def second_stage_results(model, processor, dataset, best_validation: dict, *, batch_size: int, accelerator) -> dict:
    """What a model that can re-rank adds to a run's results (``{}`` for the others).

    ``dataset`` has ``validation`` and ``test`` splits; ``best_validation`` holds the first stage's
    validation metrics. If :func:`rerank_refusal` passes, the validation split is re-ranked (top
    ``model.rerank_k``) and kept as ``validation_reranked``; if :func:`rerank_gain_refusal` then passes
    too, the test split's re-ranked metrics are added as ``test_reranked``, else ``rerank_skipped``
    holds the refusal, also printed. Evaluations are sharded over ``accelerator``'s processes."""
    if not model.can_rerank:
        return {}

    def reranked(split: str) -> dict:
        return evaluate_split(model, processor, dataset[split], batch_size=batch_size, rerank=True,
                              rerank_k=model.rerank_k, accelerator=accelerator,
                              show_progress=accelerator.is_local_main_process)

    added = {}
    refused = rerank_refusal(best_validation)
    if refused is None:
        added["validation_reranked"] = reranked("validation")
        refused = rerank_gain_refusal(best_validation, added["validation_reranked"], model.rerank_k)
    if refused:
        accelerator.print(f"no re-ranked test evaluation: {refused}")
        return {**added, "rerank_skipped": refused}
    return {**added, "test_reranked": reranked("test")}
