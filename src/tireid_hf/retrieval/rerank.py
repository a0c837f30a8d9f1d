"""A method's second retrieval stage: re-scoring a query's top-K candidates with ``model.rerank_scores``.

``rerank_scores(input_ids=[1, L], attention_mask=[1, L], pixel_values=[K, 3, H, W]) -> [K]`` is added to the
first-stage cosine of each candidate.
"""

from __future__ import annotations

import torch

from .embedding import device_of, tokenize


def supports_rerank(model) -> bool:
    """Whether ``model`` has a usable second stage: a ``rerank_scores`` method, and ``can_rerank``
    true where the model says (a CADA model trained without its matching head has the method but
    cannot re-rank)."""
    return callable(getattr(model, "rerank_scores", None)) and bool(getattr(model, "can_rerank", True))


def rerank_one(model, processor, text: str, candidate_images: list, first_scores: torch.Tensor):
    """Second stage for one query: score = first-stage cosine + ``model.rerank_scores``, re-sorted.

    Returns ``(order, scores)``: positions into the K candidates, best first, and their new scores
    (a stable sort: equal scores keep first-stage order).
    """
    device = device_of(model)
    pixel_values = processor(images=candidate_images, return_tensors="pt")["pixel_values"].to(device)
    with torch.inference_mode():
        extra = model.rerank_scores(**tokenize(processor, [text], device), pixel_values=pixel_values)
    if not isinstance(extra, torch.Tensor) or extra.shape != (len(candidate_images),):
        got = list(extra.shape) if isinstance(extra, torch.Tensor) else type(extra).__name__
        raise ValueError(f"`rerank_scores` must return a tensor of shape [{len(candidate_images)}], got {got}")
    scores = first_scores.float() + extra.float().cpu()
    order = torch.sort(scores, descending=True, stable=True).indices
    return order, scores[order]


def check_rerank(model, images, rerank_k: int, k: int) -> None:
    if not supports_rerank(model):
        raise ValueError(f"rerank=True needs a model with a second stage (`rerank_scores`); {type(model).__name__} has none")
    if images is None:
        raise ValueError("rerank=True needs the gallery images: build the index from them, or pass `images=` to load()")
    if rerank_k < k:
        raise ValueError(f"`rerank_k` ({rerank_k}) must be at least `k` ({k})")
