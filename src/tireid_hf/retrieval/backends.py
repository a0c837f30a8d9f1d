"""Search backends of :class:`~tireid_hf.retrieval.GalleryIndex`: top-k gallery rows by inner product.

One interface, :class:`SearchBackend`, with two implementations:

* :class:`ExactBackend` scores every gallery row. ``precision="float32"`` is one matmul per chunk of
  queries; ``"float16"`` and ``"int8"`` keep a compressed copy packed for fbgemm (PyTorch's x86
  quantised-linear kernels), which reads 2x / 4x fewer bytes per query. ``int8`` stores each row ``e``
  as ``codes = round(e / s)`` with one scale per row ``s = max_j |e_j| / 127``, and scores
  ``q . e ~ s * (q' . codes)`` where fbgemm also quantises the query ``q`` to 8 bits on the fly; exact
  float32 re-scoring of a candidate list (``GalleryIndex(rescore=...)``) restores the exact scores and
  order of the candidates.
* :class:`FaissBackend` is any FAISS ``index_factory`` string with inner-product metric.

A backend writes its own files (``save``) and rebuilds itself from them (``load``) given the float32
gallery embeddings and the JSON ``settings()`` it returned, so :class:`GalleryIndex` never reaches into
a backend's attributes.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..files import atomic_file
from ..validation import IndexFormatError

__all__ = ["BACKENDS", "PRECISIONS", "ExactBackend", "FaissBackend", "SearchBackend", "make_backend", "load_backend"]

PRECISIONS = ("float32", "float16", "int8")
# Query-by-gallery scores computed at once by the exact search (64 MiB of float32).
_SEARCH_CHUNK_ELEMENTS = 2**24
FAISS_FILE = "faiss.index"


class SearchBackend(ABC):
    """Top-k gallery rows by inner product; created from the float32 gallery embeddings [G, D]."""

    name: ClassVar[str]

    @abstractmethod
    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores, indices)``, both [Q, k], best first, for float32 ``queries`` [Q, D] (k <= G)."""

    @abstractmethod
    def settings(self) -> dict:
        """The JSON-serialisable settings that ``load`` needs to rebuild this backend."""

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write this backend's own files into ``directory`` (each atomically); none for some."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, embeddings: torch.Tensor, settings: dict) -> SearchBackend:
        """Rebuild from ``save``'s files and ``settings()``; :class:`~tireid_hf.validation.IndexFormatError`
        (a ``ValueError``) naming a corrupt file."""

    @abstractmethod
    def memory_bytes(self) -> int:
        """Bytes this backend holds beyond the float32 embeddings it was given."""


def _top_k_in_chunks(queries: torch.Tensor, k: int, num_items: int, score) -> tuple[torch.Tensor, torch.Tensor]:
    """``score(chunk) -> [q, G]`` over chunks of queries small enough for ``_SEARCH_CHUNK_ELEMENTS``
    scores at a time, then ``topk`` (among equal scores the order is unspecified)."""
    rows = max(1, _SEARCH_CHUNK_ELEMENTS // num_items)
    parts = [score(chunk).topk(k, dim=1) for chunk in queries.split(rows)]
    return torch.cat([part.values for part in parts]), torch.cat([part.indices for part in parts])


def _pack_int8(embeddings: torch.Tensor):
    """fbgemm's packed int8 weight of ``embeddings`` [G, D]: per-row symmetric scales ``max|e| / 127``."""
    scales = (embeddings.abs().amax(dim=1) / 127).clamp_min(torch.finfo(torch.float32).tiny)
    codes = torch.round(embeddings / scales[:, None]).clamp_(-127, 127).to(torch.int8)
    return _pack_int8_codes(codes, scales)


def _pack_int8_codes(codes: torch.Tensor, scales: torch.Tensor):
    with warnings.catch_warnings():
        # PyTorch deprecates creating quantized tensors, yet fbgemm's int8 linear is only reachable through one.
        warnings.filterwarnings("ignore", message=".*quantized tensor creation.*")
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        weight = torch._make_per_channel_quantized_tensor(
            codes, scales.double(), torch.zeros(len(codes), dtype=torch.long), 0)
    return torch.ops.quantized.linear_prepack(weight, None)


class ExactBackend(SearchBackend):
    """Scores every gallery row, in ``precision`` ``"float32"``, ``"float16"`` or ``"int8"``.

    Args:
        embeddings (`torch.Tensor` of shape [G, D]): float32 gallery embeddings (kept by reference for
            float32, compressed and packed otherwise).
        precision (`str`, *optional*, defaults to ``"float32"``): the precision of the scored copy.
        packed (*optional*): the already packed compressed copy (what ``load`` passes), instead of
            compressing ``embeddings``.
    """

    name = "exact"

    def __init__(self, embeddings: torch.Tensor, precision: str = "float32", *, packed=None):
        if precision not in PRECISIONS:
            raise ValueError(f"`precision` must be one of {PRECISIONS}, got {precision!r}")
        self.precision, self.num_items, self.dim = precision, embeddings.shape[0], embeddings.shape[1]
        self._embeddings = embeddings if precision == "float32" else None
        if packed is not None:
            self._packed = packed
        elif precision == "float16":
            self._packed = torch.ops.quantized.linear_prepack_fp16(embeddings.float(), None)
        elif precision == "int8":
            self._packed = _pack_int8(embeddings.float())
        else:
            self._packed = None

    def _score(self, queries: torch.Tensor) -> torch.Tensor:
        if self.precision == "float32":
            return queries @ self._embeddings.T
        if self.precision == "float16":
            return torch.ops.quantized.linear_dynamic_fp16(queries, self._packed)
        return torch.ops.quantized.linear_dynamic(queries, self._packed, True)

    def search(self, queries, k):
        return _top_k_in_chunks(queries, k, self.num_items, self._score)

    def settings(self) -> dict:
        return {"precision": self.precision}

    def _file(self, directory: Path) -> Path:
        return directory / f"exact_{self.precision}.safetensors"

    def compressed(self) -> dict[str, torch.Tensor]:
        """The stored copy: ``{"codes": [G, D] float16}`` or ``{"codes": [G, D] int8, "scales": [G]}``;
        ``{}`` for float32 (the gallery embeddings themselves)."""
        if self.precision == "float16":
            return {"codes": torch.ops.quantized.linear_unpack_fp16(self._packed)[0].half()}
        if self.precision == "int8":
            weight = torch.ops.quantized.linear_unpack(self._packed)[0]
            return {"codes": weight.int_repr(), "scales": weight.q_per_channel_scales().float()}
        return {}

    def save(self, directory):
        tensors = self.compressed()
        if tensors:
            atomic_file(self._file(directory), lambda path: save_file({k: v.contiguous() for k, v in tensors.items()}, path))

    @classmethod
    def load(cls, directory, embeddings, settings):
        precision = settings.get("precision", "float32")
        if precision == "float32" or precision not in PRECISIONS:
            return cls(embeddings, precision)
        path = directory / f"exact_{precision}.safetensors"
        try:
            tensors = load_file(str(path))
        except (FileNotFoundError, SafetensorError, OSError) as error:
            raise IndexFormatError(f"{path}: the {precision} copy of the gallery cannot be read ({error}); rebuild the index") from None
        expected = {"codes": (torch.float16 if precision == "float16" else torch.int8, [len(embeddings), embeddings.shape[1]])}
        if precision == "int8":
            expected["scales"] = (torch.float32, [len(embeddings)])
        for key, (dtype, shape) in expected.items():
            tensor = tensors.get(key)
            if tensor is None or tensor.dtype != dtype or list(tensor.shape) != shape:
                got = "missing" if tensor is None else f"{tensor.dtype} {list(tensor.shape)}"
                raise IndexFormatError(f"{path}: expected `{key}` of {dtype} {shape}, got {got}; rebuild the index")
        if precision == "float16":
            packed = torch.ops.quantized.linear_prepack_fp16(tensors["codes"].float(), None)
        else:
            packed = _pack_int8_codes(tensors["codes"], tensors["scales"])
        return cls(embeddings, precision, packed=packed)

    def memory_bytes(self) -> int:
        return {"float32": 0, "float16": 2, "int8": 1}[self.precision] * self.num_items * self.dim + (
            4 * self.num_items if self.precision == "int8" else 0)


def _import_faiss():
    try:
        import faiss
    except ImportError as error:
        raise ImportError("backend='faiss' needs faiss: pip install 'tireid-hf[faiss]' (faiss-cpu)") from error
    return faiss


class FaissBackend(SearchBackend):
    """A FAISS index (inner-product metric) built from ``factory`` and searched with ``params``.

    Args:
        embeddings (`torch.Tensor` of shape [G, D]): float32 gallery embeddings (trained on and added).
        factory (`str`): FAISS ``index_factory`` string, e.g. ``"IVF1024,Flat"`` or ``"HNSW32,Flat"``.
        params (`str`): FAISS ``ParameterSpace`` settings, e.g. ``"nprobe=32"``; ``""`` for none.
        index (*optional*): an already built FAISS index (what ``load`` passes) instead of ``embeddings``.
    """

    name = "faiss"

    def __init__(self, embeddings: torch.Tensor | None, factory: str, params: str, *, index=None):
        faiss = _import_faiss()
        self.factory = factory
        if index is None:
            index = faiss.index_factory(embeddings.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
            vectors = embeddings.float().contiguous().numpy()
            if not index.is_trained:
                index.train(vectors)
            index.add(vectors)
        self._index = index
        self.set_params(params)

    def set_params(self, params: str) -> None:
        """Apply FAISS search settings (e.g. ``"efSearch=512"``, ``"nprobe=64"``) without rebuilding."""
        self.params = params
        if params:
            _import_faiss().ParameterSpace().set_index_parameters(self._index, params)

    def search(self, queries, k):
        scores, indices = self._index.search(queries.contiguous().numpy(), k)
        return torch.from_numpy(scores), torch.from_numpy(indices).long()

    def settings(self) -> dict:
        return {"faiss_factory": self.factory, "faiss_params": self.params}

    def save(self, directory):
        atomic_file(directory / FAISS_FILE, lambda path: _import_faiss().write_index(self._index, path))

    @classmethod
    def load(cls, directory, embeddings, settings):
        path = directory / FAISS_FILE
        faiss = _import_faiss()
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as error:
            reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            raise IndexFormatError(f"{path}: not a readable FAISS index ({reason}); rebuild the index") from None
        if index.ntotal != len(embeddings) or index.d != embeddings.shape[1]:
            raise IndexFormatError(f"{path}: holds {index.ntotal} vectors of dimension {index.d}, the index has "
                             f"{len(embeddings)} of dimension {embeddings.shape[1]}; rebuild the index")
        return cls(None, settings["faiss_factory"], settings["faiss_params"], index=index)

    def memory_bytes(self) -> int:
        faiss = _import_faiss()
        return int(faiss.serialize_index(self._index).size)


BACKENDS = {backend.name: backend for backend in (ExactBackend, FaissBackend)}


def make_backend(name: str, embeddings: torch.Tensor, **settings) -> SearchBackend:
    """A new ``name`` backend over ``embeddings`` [G, D]; ``settings`` are its keyword arguments."""
    if name not in BACKENDS:
        raise ValueError(f"`backend` must be one of {tuple(BACKENDS)}, got {name!r}")
    return BACKENDS[name](embeddings, **settings)


def load_backend(name: str, directory: Path, embeddings: torch.Tensor, settings: dict) -> SearchBackend:
    """The ``name`` backend saved in ``directory`` (see :meth:`SearchBackend.load`)."""
    if name not in BACKENDS:
        raise ValueError(f"{directory}: unknown backend {name!r} (expected one of {tuple(BACKENDS)})")
    return BACKENDS[name].load(directory, embeddings, settings)
