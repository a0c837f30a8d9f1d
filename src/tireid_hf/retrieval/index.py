"""GalleryIndex: a gallery embedded once, searched by text, saved and loaded with the model's fingerprint."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from ..files import atomic_file
from ..validation import IndexFormatError, IndexMissingError, check_safetensors, read_json
from .backends import BACKENDS, PRECISIONS, FaissBackend, load_backend, make_backend
from .embedding import embed_images, embed_texts, model_fingerprint
from .rerank import check_rerank, rerank_one

__all__ = ["GalleryIndex", "SearchResults", "default_faiss_settings"]

INDEX_FORMAT_VERSION = 2
EMBEDDINGS_FILE = "embeddings.safetensors"
METADATA_FILE = "index.json"
# Candidate embeddings gathered at once when re-scoring (64 MiB of float32).
_RESCORE_CHUNK_ELEMENTS = 2**24


def default_faiss_settings(num_items: int) -> tuple[str, str]:
    """FAISS ``(factory, params)`` for ``num_items`` = G gallery vectors: an inverted file of
    ``nlist = max(1, min(round(4 sqrt(G)), G // 39))`` lists (39: the fewest training points per list
    FAISS accepts without a warning), searched in ``nprobe = ceil(nlist / 16)`` of them. Chosen with
    benchmarks/bench_gallery.py (figures in benchmarks/RESULTS.md).
    """
    nlist = max(1, min(round(4 * math.sqrt(num_items)), num_items // 39))
    return f"IVF{nlist},Flat", f"nprobe={math.ceil(nlist / 16)}"


@dataclass
class SearchResults:
    """Top-k gallery items for each of Q queries, best first.

    Attributes:
        indices (`torch.LongTensor` of shape [Q, k]): positions in the gallery; a search with ``min_score``
            that kept only ``n < k`` items of query ``q`` pads ``indices[q, n:]`` with -1.
        scores (`torch.FloatTensor` of shape [Q, k]): their scores (cosine, or cosine + re-rank score);
            ``-inf`` where ``indices`` is -1.
        ids (`list` of `list`): the gallery ids of the kept items, ``ids[q][i]`` for ``indices[q, i]``
            (``len(ids[q])`` items: fewer than k, possibly none, below a ``min_score``).
    """

    indices: torch.Tensor
    scores: torch.Tensor
    ids: list[list[Any]]

    def hits(self, query: int) -> list[tuple[int, float, Any]]:
        """The kept ``(gallery position, score, id)`` of query ``query``, best first (empty: no match)."""
        count = len(self.ids[query])
        return list(zip(self.indices[query, :count].tolist(), self.scores[query, :count].tolist(), self.ids[query]))


def _above(scores: torch.Tensor, indices: torch.Tensor, min_score: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scores, indices)`` [Q, k] (each row best first) with the entries scoring below ``min_score``
    replaced by ``-inf`` / -1: a row keeps its leading ``n`` entries with ``score >= min_score``."""
    if min_score is None:
        return scores, indices
    below = scores < min_score
    return scores.masked_fill(below, float("-inf")), indices.masked_fill(below, -1)


def _map_embeddings(path: Path, num_items: int, dim: int) -> torch.Tensor:
    """The float32 [num_items, dim] tensor ``embeddings`` of a safetensors file, memory-mapped
    copy-on-write (pages are read when touched: a compressed or FAISS search touches only its re-scored
    candidates); :class:`IndexFormatError` naming the file when its header (checked by
    :func:`~tireid_hf.validation.check_safetensors`) holds anything else."""
    if not path.is_file():
        raise IndexMissingError(f"{path} is missing: the index is incomplete, rebuild it")
    header_length, header = check_safetensors(path, IndexFormatError, expected={"embeddings": ("F32", [num_items, dim])})
    begin = header["embeddings"]["data_offsets"][0]
    array = np.memmap(path, dtype=np.float32, mode="c", offset=8 + header_length + begin, shape=(num_items, dim))
    return torch.from_numpy(array)


class GalleryIndex:
    """An embedded gallery that answers text queries.

    Args:
        embeddings (`torch.Tensor` of shape [G, D]): L2-normalised gallery embeddings (stored float32).
        ids (`list`, *optional*): one JSON-serialisable id per gallery item; defaults to ``0..G-1``.
        backend (`str`, *optional*, defaults to ``"exact"``): ``"exact"`` (every item scored) or
            ``"faiss"`` (approximate; needs the ``faiss-cpu`` extra: ``pip install tireid-hf[faiss]``).
        precision (`str`, *optional*, defaults to ``"float32"``): exact backend only: ``"float32"``,
            ``"float16"`` or ``"int8"`` (one scale per item), the copy every query reads (2 or 1 bytes
            per value instead of 4); compressed scores are approximate (see ``rescore``).
        rescore (`int`, *optional*, defaults to 0): re-score the ``rescore`` best candidates of the
            backend with exact float32 inner products and keep the top-k of those (``0``: no re-scoring).
        faiss_factory (`str`, *optional*): FAISS ``index_factory`` string (inner-product metric); ``"Flat"``
            is exact, ``"IVF1024,Flat"`` is trained on the gallery. Defaults to :func:`default_faiss_settings`.
        faiss_params (`str`, *optional*): FAISS ``ParameterSpace`` settings applied after building/loading
            (``"nprobe=64"`` for IVF, ``"efSearch=512"`` for HNSW, ``""`` for none). Defaults to
            :func:`default_faiss_settings` when ``faiss_factory`` is not given, else ``""``.
        fingerprint (`str`, *optional*): :func:`model_fingerprint` of the model that made the
            embeddings; ``build`` sets it and ``load`` checks it.
        search_backend (:class:`~tireid_hf.retrieval.backends.SearchBackend`, *optional*): an already
            built backend over ``embeddings`` (what ``load`` passes) instead of building one.

    >>> index = GalleryIndex.build(model, processor, images, ids=paths)      # doctest: +SKIP
    >>> index.search(["a woman in a red coat"], k=5).ids                     # doctest: +SKIP
    """

    def __init__(
        self,
        embeddings: torch.Tensor,
        ids: Sequence | None = None,
        *,
        backend: str = "exact",
        precision: str = "float32",
        rescore: int = 0,
        faiss_factory: str | None = None,
        faiss_params: str | None = None,
        fingerprint: str | None = None,
        model_name_or_path: str | None = None,
        search_backend=None,
    ):
        if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2 or embeddings.shape[0] == 0:
            got = list(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
            raise ValueError(f"`embeddings` must be a non-empty tensor of shape [num_gallery, dim], got {got}")
        if backend not in ("exact", "faiss"):
            raise ValueError(f"`backend` must be 'exact' or 'faiss', got {backend!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"`precision` must be one of {PRECISIONS}, got {precision!r}")
        if backend == "faiss" and precision != "float32":
            raise ValueError(f"`precision={precision!r}` is for the exact backend; FAISS compresses through its "
                             "factory string (e.g. faiss_factory='IVF1024,SQ8')")
        if not isinstance(rescore, int) or rescore < 0:
            raise ValueError(f"`rescore` must be a whole number >= 0 (0: no re-scoring), got {rescore!r}")
        if embeddings.dtype != torch.float32 or embeddings.device.type != "cpu" or not embeddings.is_contiguous():
            embeddings = embeddings.detach().float().cpu().contiguous()
        self.embeddings = embeddings.detach()
        ids = list(range(len(self.embeddings))) if ids is None else list(ids)
        if len(ids) != len(self.embeddings):
            raise ValueError(f"`ids` must have one id per embedding: expected {len(self.embeddings)}, got {len(ids)}")
        self.ids, self.backend, self.rescore = ids, backend, rescore
        self.fingerprint, self.model_name_or_path = fingerprint, model_name_or_path
        self.model = self.processor = self.images = None
        if search_backend is None:
            if backend == "exact":
                settings = {"precision": precision}
            else:
                default_factory, default_params = default_faiss_settings(len(self.embeddings))
                settings = {"factory": faiss_factory or default_factory,
                            "params": (default_params if faiss_factory is None else "") if faiss_params is None else faiss_params}
            search_backend = make_backend(backend, self.embeddings, **settings)
        self.search_backend = search_backend

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def precision(self) -> str:
        """The precision the exact backend scores in (``"float32"`` for FAISS: it stores what its factory says)."""
        return getattr(self.search_backend, "precision", "float32")

    @property
    def faiss_params(self) -> str | None:
        """The FAISS search settings in use (``None`` for the exact backend)."""
        return getattr(self.search_backend, "params", None)

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
        by reference. ``index_options`` go to the constructor (``backend``, ``precision``, ...).
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

    def set_faiss_params(self, faiss_params: str) -> None:
        """Change the FAISS search settings (e.g. ``"nprobe=64"``: higher recall, slower) without
        rebuilding; they are saved with the index."""
        if not isinstance(self.search_backend, FaissBackend):
            raise ValueError(f"set_faiss_params needs backend='faiss'; this index uses backend={self.backend!r}")
        self.search_backend.set_params(faiss_params)

    def _rescored(self, queries: torch.Tensor, candidates: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact float32 scores ``queries[q] . embeddings[candidates[q, c]]`` [Q, C] and the top-``k`` of
        each row, in chunks of queries; candidates marked -1 (FAISS found fewer) score ``-inf``.
        Computed in NumPy, single-threaded (torch's threaded gather stalls on a loaded machine:
        benchmarks/RESULTS.md).
        """
        rows = max(1, _RESCORE_CHUNK_ELEMENTS // (candidates.shape[1] * queries.shape[1]))
        vectors, scores, indices = self.embeddings.numpy(), [], []
        bounds = list(range(rows, len(queries), rows))
        for chunk, chunk_candidates in zip(np.split(queries.numpy(), bounds), np.split(candidates.numpy(), bounds)):
            exact = np.einsum("qd,qcd->qc", chunk, vectors[np.maximum(chunk_candidates, 0)])
            exact[chunk_candidates < 0] = -np.inf
            order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
            scores.append(np.take_along_axis(exact, order, axis=1))
            indices.append(np.take_along_axis(chunk_candidates, order, axis=1))
        return torch.from_numpy(np.concatenate(scores)), torch.from_numpy(np.concatenate(indices)).long()

    def score_threshold(self, min_score: float | str | None) -> float | None:
        """The score cut ``min_score`` stands for: ``None`` (no cut), a number, or ``"model"``: the
        ``score_threshold`` the index's model config carries (picked by train.py on validation at
        ``score_threshold_fpr``); ``ValueError`` naming the model folder where it carries none."""
        if min_score is None:
            return None
        if min_score == "model":
            if self.model is None:
                raise ValueError("min_score='model' needs the index's model: use build(), or load(dir, model=, processor=)")
            threshold = getattr(self.model.config, "score_threshold", None)
            if threshold is None:
                where = getattr(self.model, "name_or_path", "") or type(self.model).__name__
                raise ValueError(f"min_score='model': the model {where} carries no score threshold (config.json has no "
                                 "`score_threshold`; train.py picks one on validation): give a number instead")
            return float(threshold)
        if isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or not math.isfinite(min_score):
            raise ValueError(f"`min_score` must be None, a finite number or 'model', got {min_score!r}")
        return float(min_score)

    def search_embeddings(self, query_embeds: torch.Tensor, k: int = 10, *,
                          min_score: float | str | None = None) -> SearchResults:
        """Top-``k`` gallery items by inner product for query embeddings [Q, D] (k is capped at G).

        The backend returns its best ``max(k, rescore)`` candidates; with ``rescore`` they are re-scored
        with exact float32 inner products and the top ``k`` kept (among equal scores the order is
        unspecified). With ``min_score`` (see :meth:`score_threshold`) only the items whose returned
        score is ``>= min_score`` are kept: fewer than ``k``, possibly none (the scores of a compressed
        backend without ``rescore`` carry its error, so the cut does too).
        """
        threshold = self.score_threshold(min_score)
        dim = self.embeddings.shape[1]
        if not isinstance(query_embeds, torch.Tensor) or query_embeds.dim() != 2 or query_embeds.shape[1] != dim:
            got = list(query_embeds.shape) if isinstance(query_embeds, torch.Tensor) else type(query_embeds).__name__
            raise ValueError(f"`query_embeds` must have shape [num_queries, {dim}], got {got}")
        if k < 1:
            raise ValueError(f"`k` must be a positive integer, got {k}")
        k = min(k, len(self))
        query_embeds = query_embeds.detach().float().cpu().contiguous()
        scores, indices = self.search_backend.search(query_embeds, max(k, min(self.rescore, len(self))))
        if self.rescore:
            scores, indices = self._rescored(query_embeds, indices, k)
        if (indices[:, :k] < 0).any():
            raise ValueError(f"the FAISS index found fewer than k={k} items for some queries: search wider "
                             f"(set_faiss_params, now {self.faiss_params!r}) or ask for fewer")
        scores, indices = _above(scores[:, :k], indices[:, :k], threshold)
        return SearchResults(indices, scores, [[self.ids[i] for i in row if i >= 0] for row in indices.tolist()])

    def search(
        self,
        texts: Sequence[str],
        k: int = 10,
        *,
        rerank: bool = False,
        rerank_k: int | None = None,
        batch_size: int = 256,
        show_progress: bool = False,
        min_score: float | str | None = None,
    ) -> SearchResults:
        """Top-``k`` gallery ids and scores for each text, best first.

        With ``rerank=True`` the first stage retrieves ``rerank_k`` (default ``k``) candidates per
        query, the model's ``rerank_scores`` is added to their cosine scores, and they are re-sorted.
        ``min_score`` (a number, or ``"model"``: the model's validation threshold, see
        :meth:`score_threshold`) drops the items whose cosine score is below it, so a query gets fewer
        than ``k`` results, possibly none; with ``rerank`` it cuts the first stage's candidates, whose
        survivors are re-ranked.
        """
        if self.model is None or self.processor is None:
            raise ValueError("this index has no model to embed the queries: use build(), or load(dir, model=, processor=)")
        query_embeds = embed_texts(self.model, self.processor, texts, batch_size=batch_size, show_progress=show_progress)
        if not rerank:
            return self.search_embeddings(query_embeds, k, min_score=min_score)
        rerank_k = k if rerank_k is None else rerank_k
        check_rerank(self.model, self.images, rerank_k, k)
        first = self.search_embeddings(query_embeds, rerank_k, min_score=min_score)
        k = min(k, first.indices.shape[1])
        indices = torch.full((len(texts), k), -1, dtype=torch.long)
        scores = torch.full((len(texts), k), float("-inf"))
        for row, (text, kept) in enumerate(zip(texts, (len(ids) for ids in first.ids))):
            if not kept:
                continue
            candidates = first.indices[row, :kept]
            order, new_scores = rerank_one(
                self.model, self.processor, text, [self.images[int(i)] for i in candidates], first.scores[row, :kept]
            )
            shown = min(k, kept)
            indices[row, :shown], scores[row, :shown] = candidates[order[:shown]], new_scores[:shown]
        return SearchResults(indices, scores, [[self.ids[i] for i in row if i >= 0] for row in indices.tolist()])

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``embeddings.safetensors`` (float32), the backend's own files (the compressed copy,
        ``faiss.index``) and ``index.json`` (ids, fingerprint, backend and its settings). Each file is
        written under a temporary name then renamed, metadata last, so an interrupted save never leaves
        a loadable half-written index."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        metadata = {
            "format_version": INDEX_FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "model_name_or_path": self.model_name_or_path,
            "num_items": len(self),
            "dim": int(self.embeddings.shape[1]),
            "backend": self.backend,
            "backend_settings": self.search_backend.settings(),
            "rescore": self.rescore,
            "ids": self.ids,
        }
        try:
            metadata_text = json.dumps(metadata, indent=2)
        except TypeError as error:
            raise TypeError(f"gallery `ids` must be JSON-serialisable (str or int) to save the index: {error}") from error
        (directory / METADATA_FILE).unlink(missing_ok=True)  # the old metadata must not describe the new files
        atomic_file(directory / EMBEDDINGS_FILE, lambda path: save_file({"embeddings": self.embeddings.contiguous()}, path))
        self.search_backend.save(directory)
        atomic_file(directory / METADATA_FILE, lambda path: Path(path).write_text(metadata_text))

    @classmethod
    def load(cls, directory: str | os.PathLike, model=None, processor=None, images: Sequence | None = None,
             *, precision: str | None = None) -> GalleryIndex:
        """Read an index written by :meth:`save` (float32 embeddings memory-mapped).

        With ``model`` (needed to search by text), its :func:`model_fingerprint` must equal the one
        stored, else ``ValueError``: the stored embeddings would not match the queries' embeddings.
        ``images`` (the gallery, same order) enables re-ranking. ``precision``, when given, must be
        the one the index was built with (``ValueError`` otherwise).
        """
        directory = Path(directory)
        metadata_path = directory / METADATA_FILE
        if not metadata_path.is_file():
            raise IndexMissingError(f"no gallery index in {directory}: {METADATA_FILE} is missing")
        metadata = _read_metadata(metadata_path)
        if model is not None:
            fingerprint = model_fingerprint(model)
            if fingerprint != metadata["fingerprint"]:
                raise IndexFormatError(
                    f"the index in {directory} was built by another model: stored fingerprint "
                    f"{metadata['fingerprint']} ({metadata['model_name_or_path']}), given model {fingerprint} "
                    f"({getattr(model, 'name_or_path', None)}); rebuild it with GalleryIndex.build"
                )
        stored_precision = metadata["backend_settings"].get("precision", "float32")
        if precision is not None and precision != stored_precision:
            raise IndexFormatError(f"{metadata_path}: the index was built with precision {stored_precision!r}, not "
                             f"{precision!r}; rebuild it with GalleryIndex(index.embeddings, precision={precision!r})")
        embeddings = _map_embeddings(directory / EMBEDDINGS_FILE, metadata["num_items"], metadata["dim"])
        backend = load_backend(metadata["backend"], directory, embeddings, metadata["backend_settings"])
        index = cls(embeddings, metadata["ids"], backend=metadata["backend"], precision=stored_precision,
                    rescore=metadata["rescore"], fingerprint=metadata["fingerprint"],
                    model_name_or_path=metadata["model_name_or_path"], search_backend=backend)
        if images is not None and len(images) != len(index):
            raise ValueError(f"`images` must hold the {len(index)} gallery images of the index, got {len(images)}")
        index.model, index.processor, index.images = model, processor, images
        return index


# The fields of index.json: (whether a value is allowed, the values allowed in words).
_METADATA_FIELDS = {
    "fingerprint": (lambda value: value is None or isinstance(value, str), "a string or null"),
    "model_name_or_path": (lambda value: value is None or isinstance(value, str), "a string or null"),
    "num_items": (lambda value: type(value) is int and value >= 1, "a whole number >= 1"),
    "dim": (lambda value: type(value) is int and value >= 1, "a whole number >= 1"),
    "backend": (lambda value: isinstance(value, str) and value in BACKENDS, f"one of {sorted(BACKENDS)}"),
    "rescore": (lambda value: type(value) is int and value >= 0, "a whole number >= 0"),
    "ids": (lambda value: isinstance(value, list) and all(isinstance(item, str) or type(item) is int for item in value),
            "a list of strings or whole numbers"),
}
# The backend_settings of each backend: {setting: (whether a value is allowed, the values allowed in words)}.
_BACKEND_SETTINGS = {
    "exact": {"precision": (lambda value: isinstance(value, str) and value in PRECISIONS, f"one of {list(PRECISIONS)}")},
    "faiss": {"faiss_factory": (lambda value: isinstance(value, str) and value != "", "a non-empty FAISS factory string"),
              "faiss_params": (lambda value: isinstance(value, str), "a FAISS parameter string")},
}


def _read_metadata(path: Path) -> dict:
    """``index.json`` as a version-2 dict (a version-1 file, without ``backend_settings`` and
    ``rescore``, is converted: float32 exact or its FAISS settings, no re-scoring), every field of the
    type and in the range :data:`_METADATA_FIELDS` and :data:`_BACKEND_SETTINGS` allow, ``ids`` holding
    ``num_items`` ids; :class:`IndexFormatError` naming the file and field otherwise."""
    metadata = read_json(path, IndexFormatError)
    version = metadata.get("format_version")
    if type(version) is int and version == 1:
        backend = metadata.get("backend")
        metadata["backend_settings"] = ({"precision": "float32"} if backend == "exact" else
                                        {key: metadata.get(key) for key in ("faiss_factory", "faiss_params")})
        metadata["rescore"] = 0
    elif not (type(version) is int and version == INDEX_FORMAT_VERSION):
        raise IndexFormatError(f"{path}: format_version {version!r} is not supported (expected {INDEX_FORMAT_VERSION})")
    missing = sorted(({"backend_settings"} | set(_METADATA_FIELDS)) - set(metadata))
    if missing:
        raise IndexFormatError(f"{path}: missing field(s) {missing}; rebuild the index")
    for name, (allowed, words) in _METADATA_FIELDS.items():
        if not allowed(metadata[name]):
            raise IndexFormatError(f"{path}: `{name}` must be {words}, got {_shown(metadata[name])}; rebuild the index")
    settings = metadata["backend_settings"]
    if not isinstance(settings, dict):
        raise IndexFormatError(f"{path}: `backend_settings` must be a JSON object, got {_shown(settings)}")
    for name, (allowed, words) in _BACKEND_SETTINGS[metadata["backend"]].items():
        if name in settings or name != "precision":  # an exact index without a precision is float32
            if not allowed(settings.get(name)):
                raise IndexFormatError(f"{path}: `backend_settings.{name}` must be {words}, got {_shown(settings.get(name))}")
    if len(metadata["ids"]) != metadata["num_items"]:
        raise IndexFormatError(f"{path}: `ids` holds {len(metadata['ids'])} ids for num_items={metadata['num_items']}")
    return metadata


def _shown(value) -> str:
    """``repr(value)``, cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
