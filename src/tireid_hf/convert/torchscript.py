"""The parameters and buffers of a TorchScript archive, read as data: no code of the archive runs.

``torch.jit.load`` compiles the archive's ``code/`` folder and runs it: a class's TorchScript
``__setstate__`` executes while the archive loads, whatever it does. This reader runs none of it.

A TorchScript archive is a zip holding ``<name>/data.pkl`` (the module tree, pickled), the tensor
bytes under ``<name>/data/<key>``, and ``<name>/code/`` (the classes' source). Here:

* ``data.pkl`` is unpickled by a restricted ``pickle.Unpickler`` (Python's "restricting globals"):
  the only callables it can reach are this module's tensor builder (for
  ``torch._utils._rebuild_tensor_v2``), ``collections.OrderedDict``, the identity functions of
  ``torch.jit._pickle`` and the legacy storage types (``torch.FloatStorage`` ...) as dtype markers;
  a class of the archive (``__torch__.*``) becomes an inert record of its pickled state. Any other
  global is refused by name.
* ``code/`` is only PARSED (``ast.parse``, which executes nothing) for each class's
  ``__parameters__`` / ``__buffers__`` lists and its base (``Module``); a class that defines
  ``__setstate__`` is refused, since only running that code could say what its state means.

The names come out as ``torch.jit.load(path).state_dict()`` gives them: a module's parameters, its
buffers, then its submodules' in attribute order, dot-joined; ``None`` entries are left out.
"""

from __future__ import annotations

import ast
import collections
import io
import pickle
import zipfile
from pathlib import Path

import torch

from .errors import ConversionError

_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
    "ComplexDoubleStorage": torch.complex128, "ComplexFloatStorage": torch.complex64,
}
_IDENTITY_FUNCTIONS = ("build_intlist", "build_tensorlist", "build_doublelist", "build_boollist")


class _StorageType:
    """What ``torch.<X>Storage`` unpickles to here: only its dtype."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


class _Storage:
    """A tensor storage read from ``data/<key>``: its bytes and the dtype they hold."""

    def __init__(self, untyped: torch.UntypedStorage, dtype: torch.dtype):
        self.untyped, self.dtype = untyped, dtype


class _ScriptObject:
    """An instance of one of the archive's classes: its qualified name and its pickled state, inert."""

    qualified_name = ""

    def __setstate__(self, state):
        self.state = state


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """``torch._utils._rebuild_tensor_v2``'s tensor, from a storage of this archive; no hooks kept."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError(f"a tensor over {type(storage).__name__}, not over a storage of the archive")
    if backward_hooks:
        raise pickle.UnpicklingError("a tensor with backward hooks")
    if not (isinstance(storage_offset, int) and all(isinstance(n, int) for n in (*size, *stride))):
        raise pickle.UnpicklingError(f"a tensor with offset {storage_offset!r}, size {size!r}, stride {stride!r}")
    return torch.empty(0, dtype=storage.dtype).set_(storage.untyped, storage_offset, tuple(size), tuple(stride))


def _restore_type_tag(value, type_str):
    return value


class _DataUnpickler(pickle.Unpickler):
    """Unpickles ``data.pkl`` of `archive` (under `prefix`) without reaching any other callable."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, source: Path):
        super().__init__(io.BytesIO(archive.read(f"{prefix}/data.pkl")))
        self.archive, self.prefix, self.source = archive, prefix, source
        self.classes: dict[str, type] = {}
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str):
        if module == "__torch__" or module.startswith("__torch__."):
            qualified = f"{module}.{name}"
            if qualified not in self.classes:
                self.classes[qualified] = type(name, (_ScriptObject,), {"qualified_name": qualified})
            return self.classes[qualified]
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch.jit._pickle" and name in _IDENTITY_FUNCTIONS:
            return list
        if (module, name) == ("torch.jit._pickle", "restore_type_tag"):
            return _restore_type_tag
        raise pickle.UnpicklingError(f"{module}.{name} is not a tensor, a storage or a module of the archive")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)
                and isinstance(pid[2], str) and isinstance(pid[4], int)):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        _, storage_type, key, _, numel = pid
        if key not in self.storages:
            name = f"{self.prefix}/data/{key}"
            try:
                data = self.archive.read(name)
            except KeyError:
                raise pickle.UnpicklingError(f"{name} is missing from the archive") from None
            expected = numel * torch.empty(0, dtype=storage_type.dtype).element_size()
            if len(data) != expected:
                raise pickle.UnpicklingError(f"{name} holds {len(data)} bytes, not the {expected} of {numel} elements")
            self.storages[key] = _Storage(torch.UntypedStorage.from_buffer(data, dtype=torch.uint8), storage_type.dtype)
        return self.storages[key]


class _ClassInfo:
    """What the archive's ``code/`` declares of one class (parsed, never run)."""

    def __init__(self, node: ast.ClassDef):
        self.is_module = any(isinstance(base, ast.Name) and base.id == "Module" for base in node.bases)
        self.has_setstate = any(isinstance(item, ast.FunctionDef) and item.name == "__setstate__" for item in node.body)
        self.lists = {}
        for item in node.body:
            if isinstance(item, ast.Assign) and len(item.targets) == 1 and isinstance(item.targets[0], ast.Name):
                if item.targets[0].id in ("__parameters__", "__buffers__") and isinstance(item.value, ast.List):
                    self.lists[item.targets[0].id] = [element.value for element in item.value.elts
                                                      if isinstance(element, ast.Constant)]
        self.names = self.lists.get("__parameters__", []) + self.lists.get("__buffers__", [])


def _class_info(archive: zipfile.ZipFile, prefix: str, qualified: str, source: Path, parsed: dict) -> _ClassInfo:
    """The declaration of class `qualified` (``__torch__.a.b.C`` lives in ``code/__torch__/a/b.py``)."""
    module, _, name = qualified.rpartition(".")
    file_name = f"{prefix}/code/{module.replace('.', '/')}.py"
    if file_name not in parsed:
        try:
            parsed[file_name] = ast.parse(archive.read(file_name).decode("utf-8"), filename=file_name)
        except KeyError:
            raise ConversionError(f"{source}: class {qualified} has no declaration ({file_name} is missing)") from None
        except (SyntaxError, UnicodeDecodeError) as error:
            raise ConversionError(f"{source}: {file_name} cannot be parsed ({error})") from None
    node = next((item for item in parsed[file_name].body if isinstance(item, ast.ClassDef) and item.name == name), None)
    if node is None:
        raise ConversionError(f"{source}: class {qualified} is not declared in {file_name}")
    return _ClassInfo(node)


def _archive_prefix(archive: zipfile.ZipFile, source: Path) -> str:
    """The archive's top folder (every entry lies under it, ``data.pkl`` among them)."""
    prefixes = {name.split("/", 1)[0] for name in archive.namelist()}
    if len(prefixes) != 1 or f"{next(iter(prefixes))}/data.pkl" not in archive.namelist():
        raise ConversionError(f"{source}: not a TorchScript archive (one top folder holding data.pkl)")
    prefix = prefixes.pop()
    byteorder = f"{prefix}/byteorder"
    if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
        raise ConversionError(f"{source}: tensors stored {archive.read(byteorder).decode(errors='replace')}-endian; "
                              "only little-endian archives are read")
    return prefix


def read_torchscript_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The parameters and buffers of the TorchScript archive at `path` by name, read as data.

    Raises:
        ConversionError: naming the file and what cannot be read without running the archive's code
            (a class with ``__setstate__``, a global other than tensors and storages, a missing entry).
    """
    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        prefix = _archive_prefix(archive, path)
        unpickler = _DataUnpickler(archive, prefix, path)
        try:
            root = unpickler.load()
        except (pickle.UnpicklingError, EOFError, RuntimeError, TypeError, ValueError) as error:
            raise ConversionError(f"{path}: data.pkl is not readable as data ({error})") from None
        parsed: dict = {}
        infos = {qualified: _class_info(archive, prefix, qualified, path, parsed) for qualified in unpickler.classes}
    running = sorted(qualified for qualified, info in infos.items() if info.has_setstate)
    if running:
        raise ConversionError(f"{path}: class {', '.join(running)} defines __setstate__, code that torch.jit.load runs "
                              "while loading; its state cannot be read without running it, so the archive is refused")
    if not isinstance(root, _ScriptObject) or not infos[root.qualified_name].is_module:
        raise ConversionError(f"{path}: data.pkl does not hold a TorchScript module")
    state: dict[str, torch.Tensor] = {}
    _collect(root, "", infos, state, path)
    return state


def _collect(module: _ScriptObject, prefix: str, infos: dict, state: dict, source: Path) -> None:
    """Adds `module`'s parameters and buffers, then its submodules', under `prefix`."""
    attributes = getattr(module, "state", None)
    if not isinstance(attributes, dict):
        raise ConversionError(f"{source}: module {module.qualified_name} has no attribute dictionary")
    for name in infos[module.qualified_name].names:
        value = attributes.get(name)
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            raise ConversionError(f"{source}: {prefix}{name} of {module.qualified_name} is not a tensor")
        state[prefix + name] = value
    for name, value in attributes.items():
        if isinstance(value, _ScriptObject) and infos[value.qualified_name].is_module:
            _collect(value, f"{prefix}{name}.", infos, state, source)
