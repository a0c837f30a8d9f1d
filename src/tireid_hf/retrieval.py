"""Text-to-image search over an embedded gallery, and the one split-evaluation path.

* :class:`GalleryIndex` embeds a gallery of images once (``build``), answers text queries with the
  top-k gallery ids and scores (``search``; exact chunked matmul + top-k by default, FAISS
  optionally), re-ranks the top-k with a method's second stage (``rerank=True``), and persists its
  embeddings (safetensors) and metadata (``save`` / ``load``), refusing an index built by another
  model.
* :func:`evaluate_split` embeds a split's images and captions and computes the rank metrics with
  :func:`tireid_hf.metrics.rank_metrics`; training and ``tireid evaluate`` both call it.

The model is any ``transformers`` model with ``get_image_features(pixel_values=[B, 3, H, W])`` and
``get_text_features(input_ids=[B, L], attention_mask=[B, L])`` returning L2-normalised ``[B, D]``
embeddings, and optionally ``rerank_scores(input_ids=[1, L], attention_mask=[1, L],
pixel_values=[K, 3, H, W]) -> [K]``; the processor is called like ``CLIPProcessor``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .files import atomic_file
from .metrics import DIRECTIONS, rank_metrics

__all__ = ["GalleryIndex", "SearchResults", "embed_images", "embed_texts", "evaluate_split", "matching_accuracy",
           "model_fingerprint", "supports_rerank"]

INDEX_FORMAT_VERSION = 1
EMBEDDINGS_FILE = "embeddings.safetensors"
METADATA_FILE = "index.json"
FAISS_FILE = "faiss.index"
# Query-by-gallery scores computed at once by the exact search (64 MiB of float32).
_SEARCH_CHUNK_ELEMENTS = 2**24


def model_fingerprint(model: torch.nn.Module) -> str:
    """Identity of a model's weights: ``"<model_type>:<sha256>"``.

    The SHA-256 runs over every ``state_dict`` entry in name order: its name, dtype, shape and raw
    bytes. Two models share a fingerprint exactly when they have the same ``model_type`` and the
    same tensors, so any fine-tuning step, another checkpoint or another method changes it (so does
    dropping training-only submodules, e.g. ``export_for_inference()``: rebuild the index then).
    """
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None) or type(model).__name__
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"{model_type}:{digest.hexdigest()}"


def _device_of(model: torch.nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _check_embeddings(embeds, name: str, expected_rows: int) -> torch.Tensor:
    if not isinstance(embeds, torch.Tensor) or embeds.dim() != 2 or embeds.shape[0] != expected_rows:
        got = list(embeds.shape) if isinstance(embeds, torch.Tensor) else type(embeds).__name__
        raise ValueError(f"`{name}` must return a tensor of shape [{expected_rows}, D], got {got}")
    return embeds.detach().float().cpu()


def _shard_bounds(total: int, accelerator) -> tuple[int, int]:
    """This process' contiguous share ``[start, end)`` of ``total`` items (all of them without accelerator)."""
    if accelerator is None or accelerator.num_processes == 1:
        return 0, total
    per_rank = -(-total // accelerator.num_processes)
    start = min(total, accelerator.process_index * per_rank)
    return start, min(total, start + per_rank)


def _gather_shards(local: torch.Tensor, total: int, accelerator) -> torch.Tensor:
    """Concatenate every process' shard in rank order, each item exactly once: shards are padded to
    one length for the all-gather, and the padding is cut off again."""
    if accelerator is None or accelerator.num_processes == 1:
        return local
    per_rank = -(-total // accelerator.num_processes)
    padded = torch.zeros(per_rank, local.shape[1], dtype=local.dtype)
    padded[: local.shape[0]] = local
    gathered = accelerator.gather(padded.to(accelerator.device)).cpu()
    return gathered.reshape(accelerator.num_processes * per_rank, -1)[:total]


def _embed_in_batches(items: Sequence, batch_size: int, embed_batch, name: str, width: int, show_progress: bool,
                      accelerator=None) -> torch.Tensor:
    """``embed_batch(list)`` over ``items`` in batches -> float32 [len(items), D] on CPU; with an
    ``accelerator`` each process embeds a contiguous shard and the shards are gathered in order."""
    if len(items) == 0:
        raise ValueError(f"`{name}` is empty: there is nothing to embed")
    start, end = _shard_bounds(len(items), accelerator)
    chunks = []
    for offset in tqdm(range(start, end, batch_size), desc=f"embedding {name}", unit="batch", disable=not show_progress):
        batch = list(items[offset : min(offset + batch_size, end)])
        with torch.inference_mode():
            embeds = embed_batch(batch)
        chunks.append(_check_embeddings(embeds, f"embedding of {name}", len(batch)))
    local = torch.cat(chunks) if chunks else torch.zeros(0, width)  # an empty shard: more processes than items
    return _gather_shards(local, len(items), accelerator)


def _embedding_width(model) -> int:
    return int(getattr(getattr(model, "config", None), "embed_dim", 0) or 0)


def embed_images(
    model, processor, images: Sequence, batch_size: int = 64, show_progress: bool = True, accelerator=None
) -> torch.Tensor:
    """Image embeddings ``model.get_image_features`` of ``images`` (N PIL images), float32 [N, D] on CPU.

    ``images`` is anything with ``len`` and slicing, e.g. a list or a ``datasets`` column (decoded one
    batch at a time). Runs under ``torch.inference_mode`` in batches of ``batch_size``. With an
    Accelerate ``accelerator``, each process embeds a contiguous shard and all get the whole result.
    """
    device = _device_of(model)

    def embed_batch(batch):
        pixel_values = processor(images=batch, return_tensors="pt")["pixel_values"].to(device)
        return model.get_image_features(pixel_values=pixel_values)

    return _embed_in_batches(images, batch_size, embed_batch, "images", _embedding_width(model), show_progress, accelerator)


def _tokenize(processor, texts: list[str], device: torch.device) -> dict[str, torch.Tensor]:
    tokens = processor(text=texts, return_tensors="pt", padding=True, truncation=True)
    return {"input_ids": tokens["input_ids"].to(device), "attention_mask": tokens["attention_mask"].to(device)}


def embed_texts(
    model, processor, texts: Sequence[str], batch_size: int = 256, show_progress: bool = True, accelerator=None
) -> torch.Tensor:
    """Text embeddings ``model.get_text_features`` of ``texts`` (N strings), float32 [N, D] on CPU
    (sharded across processes like :func:`embed_images` when an ``accelerator`` is given)."""
    if isinstance(texts, str):
        raise TypeError("`texts` must be a sequence of strings, got a single string (wrap it in a list)")
    device = _device_of(model)

    def embed_batch(batch):
        return model.get_text_features(**_tokenize(processor, batch, device))

    return _embed_in_batches(texts, batch_size, embed_batch, "texts", _embedding_width(model), show_progress, accelerator)


def supports_rerank(model) -> bool:
    """Whether ``model`` has a usable second stage: a ``rerank_scores`` method, and ``can_rerank``
    true where the model says (a CADA model trained without its matching head has the method but
    cannot re-rank)."""
    return callable(getattr(model, "rerank_scores", None)) and bool(getattr(model, "can_rerank", True))

def _rerank_one(model, processor, text: str, candidate_images: list, first_scores: torch.Tensor):
    """Second stage for one query: score = first-stage cosine + ``model.rerank_scores``, re-sorted.

    Returns ``(order, scores)``: positions into the K candidates, best first, and their new scores
    (a stable sort: equal scores keep first-stage order).
    """
    device = _device_of(model)
    pixel_values = processor(images=candidate_images, return_tensors="pt")["pixel_values"].to(device)
    with torch.inference_mode():
        extra = model.rerank_scores(**_tokenize(processor, [text], device), pixel_values=pixel_values)
    if not isinstance(extra, torch.Tensor) or extra.shape != (len(candidate_images),):
        got = list(extra.shape) if isinstance(extra, torch.Tensor) else type(extra).__name__
        raise ValueError(f"`rerank_scores` must return a tensor of shape [{len(candidate_images)}], got {got}")
    scores = first_scores.float() + extra.float().cpu()
    order = torch.sort(scores, descending=True, stable=True).indices
    return order, scores[order]


def _check_rerank(model, images, rerank_k: int, k: int) -> None:
    if not supports_rerank(model):
        raise ValueError(f"rerank=True needs a model with a second stage (`rerank_scores`); {type(model).__name__} has none")
    if images is None:
        raise ValueError("rerank=True needs the gallery images: build the index from them, or pass `images=` to load()")
    if rerank_k < k:
        raise ValueError(f"`rerank_k` ({rerank_k}) must be at least `k` ({k})")


@dataclass
class SearchResults:
    """Top-k gallery items for each of Q queries, best first.

    Attributes:
        indices (`torch.LongTensor` of shape [Q, k]): positions in the gallery.
        scores (`torch.FloatTensor` of shape [Q, k]): their scores (cosine, or cosine + re-rank score).
        ids (`list` of `list`): their gallery ids, ``ids[q][i]`` for ``indices[q, i]``.
    """

    indices: torch.Tensor
    scores: torch.Tensor
    ids: list[list[Any]]


class GalleryIndex:
    """An embedded gallery that answers text queries.

    Args:
        embeddings (`torch.Tensor` of shape [G, D]): L2-normalised gallery embeddings (stored float32).
        ids (`list`, *optional*): one JSON-serialisable id per gallery item; defaults to ``0..G-1``.
        backend (`str`, *optional*, defaults to ``"exact"``): ``"exact"`` (chunked matmul + top-k) or
            ``"faiss"`` (needs the ``faiss-cpu`` extra: ``pip install tireid-hf[faiss]``).
        faiss_factory (`str`, *optional*, defaults to ``"HNSW32,Flat"``): FAISS ``index_factory``
            string (inner-product metric); ``"Flat"`` is exact, ``"HNSW32,Flat"`` approximate and
            needs no training, ``"IVF1024,Flat"`` is trained on the gallery.
        faiss_params (`str`, *optional*, defaults to ``"efSearch=128"``): FAISS ``ParameterSpace``
            settings applied after building/loading (e.g. ``"nprobe=32"`` for IVF), ``""`` for none.
        fingerprint (`str`, *optional*): :func:`model_fingerprint` of the model that made the
            embeddings; ``build`` sets it and ``load`` checks it.

    >>> index = GalleryIndex.build(model, processor, images, ids=paths)      # doctest: +SKIP
    >>> index.search(["a woman in a red coat"], k=5).ids                     # doctest: +SKIP
    """

    def __init__(
        self,
        embeddings: torch.Tensor,
        ids: Sequence | None = None,
        *,
        backend: str = "exact",
        faiss_factory: str = "HNSW32,Flat",
        faiss_params: str = "efSearch=128",
        fingerprint: str | None = None,
        model_name_or_path: str | None = None,
    ):
        if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2 or embeddings.shape[0] == 0:
            got = list(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
            raise ValueError(f"`embeddings` must be a non-empty tensor of shape [num_gallery, dim], got {got}")
        if backend not in ("exact", "faiss"):
            raise ValueError(f"`backend` must be 'exact' or 'faiss', got {backend!r}")
        self.embeddings = embeddings.detach().float().cpu().contiguous()
        ids = list(range(len(self.embeddings))) if ids is None else list(ids)
        if len(ids) != len(self.embeddings):
            raise ValueError(f"`ids` must have one id per embedding: expected {len(self.embeddings)}, got {len(ids)}")
        self.ids = ids
        self.backend, self.faiss_factory, self.faiss_params = backend, faiss_factory, faiss_params
        self.fingerprint, self.model_name_or_path = fingerprint, model_name_or_path
        self.model = self.processor = self.images = None
        self._faiss_index = self._build_faiss() if backend == "faiss" else None

    def __len__(self) -> int:
        return len(self.embeddings)

    @classmethod
    def build(
        cls,
        model,
        processor,
        images: Sequence,
        ids: Sequence | None = None,
        batch_size: int = 64,
        show_progress: bool = True,
        **index_options,
    ) -> GalleryIndex:
        """Embed ``images`` (G PIL images, a list or a ``datasets`` column) once with ``model``.

        The index keeps ``model``, ``processor`` (to embed queries) and ``images`` (for re-ranking)
        by reference. ``index_options`` go to the constructor (``backend``, ``faiss_factory``, ...).
        """
        embeddings = embed_images(model, processor, images, batch_size=batch_size, show_progress=show_progress)
        index = cls(
            embeddings,
            ids,
            fingerprint=model_fingerprint(model),
            model_name_or_path=getattr(model, "name_or_path", None),
            **index_options,
        )
        index.model, index.processor, index.images = model, processor, images
        return index

    def _build_faiss(self):
        faiss = _import_faiss()
        index = faiss.index_factory(self.embeddings.shape[1], self.faiss_factory, faiss.METRIC_INNER_PRODUCT)
        vectors = self.embeddings.numpy()
        if not index.is_trained:
            index.train(vectors)
        index.add(vectors)
        self._apply_faiss_params(index)
        return index

    def _apply_faiss_params(self, index) -> None:
        if self.faiss_params:
            _import_faiss().ParameterSpace().set_index_parameters(index, self.faiss_params)

    def set_faiss_params(self, faiss_params: str) -> None:
        """Change the FAISS search settings (e.g. ``"efSearch=512"``: higher recall, slower) without
        rebuilding; they are saved with the index."""
        if self._faiss_index is None:
            raise ValueError(f"set_faiss_params needs backend='faiss'; this index uses backend={self.backend!r}")
        self.faiss_params = faiss_params
        self._apply_faiss_params(self._faiss_index)

    def search_embeddings(self, query_embeds: torch.Tensor, k: int = 10) -> SearchResults:
        """Top-``k`` gallery items by inner product for query embeddings [Q, D] (k is capped at G).

        Exact backend: scores = query_embeds @ embeddings.T in chunks of queries, then ``topk``
        (among equal scores the order is unspecified). FAISS backend: ``index.search``.
        """
        if not isinstance(query_embeds, torch.Tensor) or query_embeds.dim() != 2 or query_embeds.shape[1] != self.embeddings.shape[1]:
            got = list(query_embeds.shape) if isinstance(query_embeds, torch.Tensor) else type(query_embeds).__name__
            raise ValueError(f"`query_embeds` must have shape [num_queries, {self.embeddings.shape[1]}], got {got}")
        if k < 1:
            raise ValueError(f"`k` must be a positive integer, got {k}")
        k = min(k, len(self))
        query_embeds = query_embeds.detach().float().cpu().contiguous()
        if self._faiss_index is not None:
            scores, indices = self._faiss_index.search(query_embeds.numpy(), k)
            scores, indices = torch.from_numpy(scores), torch.from_numpy(indices).long()
        else:
            rows = max(1, _SEARCH_CHUNK_ELEMENTS // len(self))
            parts = [(chunk @ self.embeddings.T).topk(k, dim=1) for chunk in query_embeds.split(rows)]
            scores = torch.cat([part.values for part in parts])
            indices = torch.cat([part.indices for part in parts])
        return SearchResults(indices, scores, [[self.ids[i] for i in row] for row in indices.tolist()])

    def search(
        self,
        texts: Sequence[str],
        k: int = 10,
        *,
        rerank: bool = False,
        rerank_k: int | None = None,
        batch_size: int = 256,
        show_progress: bool = False,
    ) -> SearchResults:
        """Top-``k`` gallery ids and scores for each text, best first.

        With ``rerank=True`` the first stage retrieves ``rerank_k`` (default ``k``) candidates per
        query, the model's ``rerank_scores`` is added to their cosine scores, and they are re-sorted.
        """
        if self.model is None or self.processor is None:
            raise ValueError("this index has no model to embed the queries: use build(), or load(dir, model=, processor=)")
        query_embeds = embed_texts(self.model, self.processor, texts, batch_size=batch_size, show_progress=show_progress)
        if not rerank:
            return self.search_embeddings(query_embeds, k)
        rerank_k = k if rerank_k is None else rerank_k
        _check_rerank(self.model, self.images, rerank_k, k)
        first = self.search_embeddings(query_embeds, rerank_k)
        k = min(k, first.indices.shape[1])
        indices, scores = [], []
        for text, candidates, first_scores in zip(texts, first.indices, first.scores):
            order, new_scores = _rerank_one(
                self.model, self.processor, text, [self.images[int(i)] for i in candidates], first_scores
            )
            indices.append(candidates[order[:k]])
            scores.append(new_scores[:k])
        indices = torch.stack(indices)
        return SearchResults(indices, torch.stack(scores), [[self.ids[i] for i in row] for row in indices.tolist()])

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``embeddings.safetensors``, ``index.json`` (ids, fingerprint, backend) and, for the
        FAISS backend, ``faiss.index``. Each file is written under a temporary name then renamed,
        metadata last, so an interrupted save never leaves a loadable half-written index."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        metadata = {
            "format_version": INDEX_FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "model_name_or_path": self.model_name_or_path,
            "num_items": len(self),
            "dim": int(self.embeddings.shape[1]),
            "backend": self.backend,
            "faiss_factory": self.faiss_factory,
            "faiss_params": self.faiss_params,
            "ids": self.ids,
        }
        try:
            metadata_text = json.dumps(metadata, indent=2)
        except TypeError as error:
            raise TypeError(f"gallery `ids` must be JSON-serialisable (str or int) to save the index: {error}") from error
        atomic_file(directory / EMBEDDINGS_FILE, lambda path: save_file({"embeddings": self.embeddings}, path))
        if self._faiss_index is not None:
            atomic_file(directory / FAISS_FILE, lambda path: _import_faiss().write_index(self._faiss_index, path))
        atomic_file(directory / METADATA_FILE, lambda path: Path(path).write_text(metadata_text))

    @classmethod
    def load(cls, directory: str | os.PathLike, model=None, processor=None, images: Sequence | None = None) -> GalleryIndex:
        """Read an index written by :meth:`save`.

        With ``model`` (needed to search by text), its :func:`model_fingerprint` must equal the one
        stored, else ``ValueError``: the stored embeddings would not match the queries' embeddings.
        ``images`` (the gallery, same order) enables re-ranking.
        """
        directory = Path(directory)
        metadata_path = directory / METADATA_FILE
        if not metadata_path.is_file():
            raise FileNotFoundError(f"no gallery index in {directory}: {METADATA_FILE} is missing")
        metadata = json.loads(metadata_path.read_text())
        if metadata.get("format_version") != INDEX_FORMAT_VERSION:
            raise ValueError(
                f"{metadata_path}: format_version {metadata.get('format_version')!r} is not supported "
                f"(expected {INDEX_FORMAT_VERSION})"
            )
        if model is not None:
            fingerprint = model_fingerprint(model)
            if fingerprint != metadata["fingerprint"]:
                raise ValueError(
                    f"the index in {directory} was built by another model: stored fingerprint "
                    f"{metadata['fingerprint']} ({metadata['model_name_or_path']}), given model {fingerprint} "
                    f"({getattr(model, 'name_or_path', None)}); rebuild it with GalleryIndex.build"
                )
        embeddings = load_file(str(directory / EMBEDDINGS_FILE))["embeddings"]
        if list(embeddings.shape) != [metadata["num_items"], metadata["dim"]]:
            raise ValueError(
                f"{directory / EMBEDDINGS_FILE}: expected embeddings of shape [{metadata['num_items']}, "
                f"{metadata['dim']}] (from {METADATA_FILE}), got {list(embeddings.shape)}"
            )
        # Built as exact, then given the stored FAISS index (rebuilding it could take minutes).
        index = cls(
            embeddings,
            metadata["ids"],
            faiss_factory=metadata["faiss_factory"],
            faiss_params=metadata["faiss_params"],
            fingerprint=metadata["fingerprint"],
            model_name_or_path=metadata["model_name_or_path"],
        )
        if metadata["backend"] == "faiss":
            index.backend = "faiss"
            index._faiss_index = _import_faiss().read_index(str(directory / FAISS_FILE))
            index._apply_faiss_params(index._faiss_index)
        index.model, index.processor, index.images = model, processor, images
        if images is not None and len(images) != len(index):
            raise ValueError(f"`images` must hold the {len(index)} gallery images of the index, got {len(images)}")
        return index


def _import_faiss():
    try:
        import faiss
    except ImportError as error:
        raise ImportError("backend='faiss' needs faiss: pip install 'tireid-hf[faiss]' (faiss-cpu)") from error
    return faiss


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
) -> dict[str, float]:
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

    Returns:
        `dict`: flat, ``"{direction}/{key}"`` for every key of :func:`rank_metrics`, e.g. ``"t2i/R1"``,
        ``"t2i/mAP"``, ``"t2i/num_queries"``.
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
        _check_rerank(model, split_dataset, rerank_k, 1)

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
        if rerank:
            _rerank_similarity(model, processor, texts, images, similarity, rerank_k, show_progress)
    finally:
        model.train(was_training)

    results: dict[str, float] = {}
    for direction in directions:
        metrics = rank_metrics(similarity, text_pids, image_pids, ks=ks, direction=direction)
        results.update({f"{direction}/{key}": value for key, value in metrics.items()})
    return results


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
    device = _device_of(model)
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
                scores.append(model.rerank_scores(**_tokenize(processor, [texts[q]], device),
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
        order, _ = _rerank_one(model, processor, texts[row], [images[int(i)] for i in candidates], top.values[row])
        base = similarity[row].max() + 1
        similarity[row, candidates[order]] = base + torch.arange(rerank_k, 0, -1, dtype=similarity.dtype)
