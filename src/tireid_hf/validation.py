"""Checks of the stored files tireid-hf reads back (model folders, gallery indexes), run where they are
read, before any other library parses them.

Each check raises the error kind it is given (a :class:`~tireid_hf.errors.TIReIDInputError`), its
message naming the file, the field and the values allowed.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

from .errors import TIReIDInputError

__all__ = ["IndexFormatError", "IndexMissingError", "ModelFolderError", "MAX_SAFETENSORS_HEADER", "SAFETENSORS_DTYPES",
           "check_safetensors", "read_json"]


class ModelFolderError(TIReIDInputError):
    """A model folder (``config.json``, the processor and tokenizer files, ``model.safetensors``) that
    cannot be loaded; the message names the file and the field."""


class IndexFormatError(TIReIDInputError):
    """A saved :class:`~tireid_hf.retrieval.GalleryIndex` that cannot be loaded; the message names the
    file and the field."""


class IndexMissingError(IndexFormatError, FileNotFoundError):
    """A file of a saved gallery index is missing (also a ``FileNotFoundError``)."""


# Bytes per element of each safetensors dtype.
SAFETENSORS_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
                      "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
# The largest header the safetensors library itself accepts (100 MB).
MAX_SAFETENSORS_HEADER = 100_000_000
# The first bytes of what torch.save writes: a zip archive, or a bare pickle (protocol 2 and above).
_PICKLE_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def read_json(path: str | os.PathLike, error: type[TIReIDInputError], what: type | None = dict):
    """The JSON value stored in ``path`` (UTF-8), which must be a ``what`` (``None``: any JSON value).

    Raises ``error`` naming the file when it cannot be read, is not UTF-8, is not JSON (or nests deeper
    than Python's recursion limit), or holds another kind of value."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path} is missing") from None
    except OSError as reason:
        raise error(f"{path}: cannot be read ({reason.strerror or reason})") from None
    except UnicodeDecodeError as reason:
        raise error(f"{path}: not UTF-8 text (byte {reason.start})") from None
    except json.JSONDecodeError as reason:
        raise error(f"{path}: not valid JSON ({reason})") from None
    except RecursionError:
        raise error(f"{path}: not valid JSON (nested too deeply)") from None
    if what is not None and not isinstance(value, what):
        expected = {dict: "a JSON object", list: "a JSON array"}.get(what, what.__name__)
        raise error(f"{path}: expected {expected}, got {type(value).__name__}")
    return value


def check_safetensors(path: str | os.PathLike, error: type[TIReIDInputError],
                      expected: dict[str, tuple[str, list[int]]] | None = None) -> tuple[int, dict]:
    """The header of the safetensors file ``path`` as ``(header length, {name: entry})``, checked without
    reading the tensors: not a pickle or zip (``torch.save``), an 8-byte little-endian header length of at
    most :data:`MAX_SAFETENSORS_HEADER` and the file's size, a JSON object of tensors, each with a known
    ``dtype``, a ``shape`` of whole numbers >= 0 and ``data_offsets`` ``[begin, end]`` holding exactly
    ``numel x element size`` bytes inside the file, the tensors covering the data without overlap.

    ``expected`` (``{name: (dtype, shape)}``), when given, must be exactly the tensors stored. Raises
    ``error`` naming the file (and tensor and field) otherwise.
    """
    path = Path(path)

    def unreadable(reason: str) -> TIReIDInputError:
        return error(f"{path}: not a readable safetensors file ({reason})")

    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            start = handle.read(8)
            if start.startswith(_PICKLE_MAGIC):
                raise unreadable("a pickle or zip archive written by torch.save; tireid-hf loads only safetensors "
                                 "weights, written by save_pretrained or safetensors.torch.save_file")
            if len(start) < 8:
                raise unreadable(f"{size} bytes, truncated")
            (header_length,) = struct.unpack("<Q", start)
            if header_length > min(MAX_SAFETENSORS_HEADER, size - 8):
                raise unreadable(f"its header length {header_length} exceeds the {size - 8} bytes after it or "
                                 f"{MAX_SAFETENSORS_HEADER}: truncated or another format")
            header_bytes = handle.read(header_length)
    except FileNotFoundError:
        raise error(f"{path} is missing") from None
    except OSError as reason:
        raise error(f"{path}: cannot be read ({reason.strerror or reason})") from None
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as reason:
        raise unreadable(f"its header is not UTF-8 JSON: {reason}") from None
    if not isinstance(header, dict):
        raise unreadable(f"its header must be a JSON object of tensors, got {type(header).__name__}")
    metadata = header.pop("__metadata__", {})
    if not (isinstance(metadata, dict) and all(isinstance(value, str) for value in metadata.values())):
        raise unreadable("its `__metadata__` must map names to strings")
    data_size, spans = size - 8 - header_length, []
    for name, entry in header.items():
        if not (isinstance(entry, dict) and {"dtype", "shape", "data_offsets"} <= set(entry)):
            raise unreadable(f"tensor {name!r} must be an object with `dtype`, `shape` and `data_offsets`")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in SAFETENSORS_DTYPES:
            raise unreadable(f"tensor {name!r}: `dtype` must be one of {sorted(SAFETENSORS_DTYPES)}, got {dtype!r}")
        if not (isinstance(shape, list) and all(_whole(side) for side in shape)):
            raise unreadable(f"tensor {name!r}: `shape` must be a list of whole numbers >= 0, got {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_whole(offset) for offset in offsets)
                and offsets[0] <= offsets[1] <= data_size):
            raise unreadable(f"tensor {name!r}: `data_offsets` must be [begin, end] with 0 <= begin <= end <= "
                             f"{data_size} (the data's size; a shorter file is truncated), got {offsets!r}")
        if offsets[1] - offsets[0] != math.prod(shape) * SAFETENSORS_DTYPES[dtype]:
            raise unreadable(f"tensor {name!r}: {dtype} {shape} needs {math.prod(shape) * SAFETENSORS_DTYPES[dtype]} "
                             f"bytes, its `data_offsets` {offsets} hold {offsets[1] - offsets[0]}")
        spans.append(tuple(offsets))
    covered = 0
    for begin, end in sorted(spans):
        if begin != covered:
            raise unreadable(f"the tensors' `data_offsets` overlap or leave a gap at byte {covered} of the data")
        covered = end
    if covered != data_size:
        raise unreadable(f"the tensors hold {covered} bytes of data, the file {data_size}: truncated or extended")
    if expected is not None:
        found = {name: (entry["dtype"], entry["shape"]) for name, entry in header.items()}
        if found != {name: (dtype, list(shape)) for name, (dtype, shape) in expected.items()}:
            raise error(f"{path}: expected the tensors {_describe(expected)}, got {_describe(found)}")
    return header_length, header


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _describe(tensors: dict) -> str:
    return ", ".join(f"{name} {dtype} {list(shape)}" for name, (dtype, shape) in sorted(tensors.items())) or "none"
