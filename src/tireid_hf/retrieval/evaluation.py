"""The one split-evaluation path of tireid-hf (training and ``tireid evaluate`` both call it), and the
held-out accuracy of a second stage."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from ..metrics import DIRECTIONS, score_threshold_at_fpr
from ..metrics.retrieval import rank_metrics_with_per_query
from .embedding import device_of, embed_images, embed_texts, tokenize
from .rerank import check_rerank, rerank_one, supports_rerank

__all__ = ["evaluate_split", "matching_accuracy", "split_queries"]


def split_queries(split_dataset) -> tuple[list[str], list[int]]:
    """The queries of a split under the TIReID protocol: every caption of every row, in row order,
    with its row's pid. Returns ``(texts, pids)``, two lists of length ``sum(len(row.captions))``."""
    texts, pids = [], []
    for pid, captions in zip(split_dataset["pid"], split_dataset["captions"]):
        texts += captions
        pids += [int(pid)] * len(captions)
    return texts, pids


def evaluate_split(
    model,
    processor,
    split_dataset,
    *,
    batch_size: int = 64,
    rerank: bool = False,
    rerank_k: int = 10,
    directions: Sequence[str] = ("t2i",),
    ks: Sequence[int] = (1, 5, 10),
    show_progress: bool = True,
    accelerator=None,
    return_per_query: bool = False,
    threshold_fpr: float | None = None,
) -> dict[str, float] | tuple[dict[str, float], dict[str, dict[str, list]]]:
    """Rank metrics of a split under the TIReID protocol; the one evaluation path of tireid-hf.

    Queries are every caption of the split (pid = its row's pid), the gallery is every image of the
    split, relevant = same pid. Images and captions are embedded in batches (``torch.inference_mode``,
    model in eval mode, its previous mode restored), ``similarity = text_embeds @ image_embeds.T``
    [num_captions, num_images], and :func:`rank_metrics` scores each direction.

    Args:
        split_dataset (`datasets.Dataset`): one row per image with ``image``, ``pid`` and ``captions``.
        rerank (`bool`, *optional*, defaults to `False`): t2i only: re-rank each caption's top
            ``rerank_k`` images by cosine + ``model.rerank_scores``; they keep the top ``rerank_k``
            places in their new order, the rest of the ranking is unchanged.
        directions (`Sequence[str]`, *optional*, defaults to ``("t2i",)``): any of ``"t2i"``, ``"i2t"``.
        accelerator (`accelerate.Accelerator`, *optional*): in distributed runs each process embeds a
            contiguous shard of the images and captions; the shards are gathered so that every
            query and gallery item counts exactly once, and every process returns the same metrics.
        return_per_query (`bool`, *optional*, defaults to `False`): also return each query's values
            (:func:`~tireid_hf.metrics.per_query_metrics`), what a paired comparison of two models on
            the same split needs (:func:`~tireid_hf.metrics.paired_bootstrap`).
        threshold_fpr (`float`, *optional*): also return ``"t2i/score_threshold"``, the cosine score at which
            same-person decisions over all caption-image pairs of the split have false-positive rate at most
            ``threshold_fpr`` (:func:`~tireid_hf.metrics.score_threshold_at_fpr` of the first-stage
            ``similarity``, before any re-ranking).

    Returns:
        `dict`: flat, ``"{direction}/{key}"`` for every key of :func:`rank_metrics`, e.g. ``"t2i/R1"``,
        ``"t2i/mAP"``, ``"t2i/num_queries"``. With ``return_per_query``, ``(that dict, per_query)``:
        ``per_query[direction]`` maps ``R{k}``, ``AP``, ``INP`` (fractions) and ``pid`` to plain lists,
        one entry per query in query order (captions in row order for t2i, images for i2t).
    """
    directions = tuple(directions)
    if not directions or any(direction not in DIRECTIONS for direction in directions):
        raise ValueError(f"`directions` must be a non-empty subset of {DIRECTIONS}, got {directions!r}")
    if rerank and directions != ("t2i",):
        raise ValueError(f"rerank=True re-ranks text-to-image results only: use directions=('t2i',), got {directions!r}")
    missing = {"image", "pid", "captions"} - set(split_dataset.column_names)
    if missing:
        raise ValueError(f"`split_dataset` needs the columns image, pid, captions; missing {sorted(missing)}")
    if len(split_dataset) == 0:
        raise ValueError("`split_dataset` is empty: there is no gallery to evaluate")
    if rerank:
        check_rerank(model, split_dataset, rerank_k, 1)

    image_pids = torch.tensor(list(split_dataset["pid"]), dtype=torch.int64)
    texts, text_pids = split_queries(split_dataset)
    text_pids = torch.tensor(text_pids, dtype=torch.int64)

    was_training = model.training
    model.eval()
    try:
        images = split_dataset["image"]
        image_embeds = embed_images(model, processor, images, batch_size=batch_size, show_progress=show_progress,
                                    accelerator=accelerator)
        text_embeds = embed_texts(model, processor, texts, batch_size=batch_size, show_progress=show_progress,
                                  accelerator=accelerator)
        similarity = text_embeds @ image_embeds.T
        threshold = None if threshold_fpr is None else score_threshold_at_fpr(similarity, text_pids, image_pids, threshold_fpr)
        if rerank:
            _rerank_similarity(model, processor, texts, images, similarity, rerank_k, show_progress)
    finally:
        model.train(was_training)

    results: dict[str, float] = {}
    per_query: dict[str, dict[str, list]] = {}
    for direction in directions:
        metrics, values = rank_metrics_with_per_query(similarity, text_pids, image_pids, ks=ks, direction=direction)
        results.update({f"{direction}/{key}": value for key, value in metrics.items()})
        if return_per_query:
            per_query[direction] = {key: value.tolist() for key, value in values.items() if key != "query_index"}
    if threshold is not None:
        results["t2i/score_threshold"] = float(threshold)
    return (results, per_query) if return_per_query else results


def matching_accuracy(
    model, processor, split_dataset, *, max_queries: int = 256, batch_size: int = 64
) -> dict[str, float]:
    """How well a second stage tells a caption's own image from the hardest other identity, on held-out pairs.

    For up to ``max_queries`` captions, evenly spaced over the split's queries (:func:`split_queries`),
    the positive is the caption's own image and the hardest negative the image of ANOTHER identity
    that the first stage (cosine of the retrieval embeddings) ranks highest for it. Both are scored
    by ``model.rerank_scores`` (a probability of "match", as CADA's matching head gives)::

        positive_accuracy = mean_q 1[score(q, own image) > 0.5]
        negative_accuracy = mean_q 1[score(q, hardest negative) < 0.5]
        accuracy          = (positive_accuracy + negative_accuracy) / 2     (balanced: a constant answer gets 0.5)
        pairwise_accuracy = mean_q 1[score(q, own image) > score(q, hardest negative)]   (chance 0.5)

    Returns the four as ``"itm/<name>"`` in [0, 1] (plus ``"itm/num_queries"``); the model's mode is restored.
    """
    if not supports_rerank(model):
        raise ValueError(f"matching_accuracy needs a model with a second stage (`rerank_scores`); {type(model).__name__} has none")
    if max_queries < 1:
        raise ValueError(f"`max_queries` must be >= 1, got {max_queries}")
    texts, text_pids = split_queries(split_dataset)
    image_pids = torch.tensor(list(split_dataset["pid"]), dtype=torch.int64)
    rows = [row for row, captions in enumerate(split_dataset["captions"]) for _ in captions]
    chosen = torch.linspace(0, len(texts) - 1, min(max_queries, len(texts))).round().long().unique().tolist()
    images = split_dataset["image"]
    device = device_of(model)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            pixel_values = torch.cat([processor(images=images[start:start + batch_size], return_tensors="pt")["pixel_values"]
                                      for start in range(0, len(images), batch_size)]).to(device)
            image_embeds = torch.cat([model.get_image_features(pixel_values=pixel_values[start:start + batch_size])
                                      for start in range(0, len(images), batch_size)]).float().cpu()
        text_embeds = embed_texts(model, processor, [texts[q] for q in chosen], batch_size=batch_size, show_progress=False)
        similarity = (text_embeds @ image_embeds.T).masked_fill(
            torch.tensor([text_pids[q] for q in chosen]).view(-1, 1) == image_pids.view(1, -1), float("-inf"))
        if torch.isinf(similarity).all(dim=1).any():
            raise ValueError("matching_accuracy needs at least two identities in the split (no negative image otherwise)")
        hardest = similarity.argmax(dim=1).tolist()
        scores = []
        with torch.inference_mode():
            for q, negative in zip(chosen, hardest):
                scores.append(model.rerank_scores(**tokenize(processor, [texts[q]], device),
                                                  pixel_values=pixel_values[[rows[q], negative]]).float().cpu())
    finally:
        model.train(was_training)
    scores = torch.stack(scores)  # [Q, 2]: own image, hardest negative
    positive, negative = (scores[:, 0] > 0.5).float().mean().item(), (scores[:, 1] < 0.5).float().mean().item()
    return {"itm/positive_accuracy": positive, "itm/negative_accuracy": negative,
            "itm/accuracy": (positive + negative) / 2,
            "itm/pairwise_accuracy": (scores[:, 0] > scores[:, 1]).float().mean().item(),
            "itm/num_queries": float(len(chosen))}


def _rerank_similarity(model, processor, texts, images, similarity: torch.Tensor, rerank_k: int, show_progress: bool):
    """In place: give each row's top ``rerank_k`` images scores above the rest of the row, in their
    re-ranked order (``row max + 1 + (K - position)``, exact in float32), so ``rank_metrics`` sees
    the re-ranked top-K followed by the unchanged first-stage ranking."""
    rerank_k = min(rerank_k, similarity.shape[1])
    top = similarity.topk(rerank_k, dim=1)
    for row in tqdm(range(similarity.shape[0]), desc="re-ranking", unit="query", disable=not show_progress):
        candidates = top.indices[row]
        order, _ = rerank_one(model, processor, texts[row], [images[int(i)] for i in candidates], top.values[row])
        base = similarity[row].max() + 1
        similarity[row, candidates[order]] = base + torch.arange(rerank_k, 0, -1, dtype=similarity.dtype)
