"""Read a reference checkpoint file into a flat ``{name: tensor}`` state dict; no code in the file runs.

Three containers occur in the field:

* safetensors (a state dict as it is);
* a PyTorch file written by ``torch.save`` — a bare state dict, or a training checkpoint such as
  IRRA's ``best.pth`` (``{"model": state_dict, "optimizer": ..., "scheduler": ..., "epoch": ...}``)
  or ``{"state_dict": ...}``; read with ``torch.load(weights_only=True)``, which refuses arbitrary
  objects;
* a TorchScript archive (OpenAI's released CLIP files): its parameters and buffers are read as data
  (:mod:`.torchscript`), never with ``torch.jit.load``, which runs the archive's code.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from .errors import ConversionError
from .torchscript import read_torchscript_tensors

__all__ = ["ConversionError", "is_torchscript_archive", "read_state_dict"]


def is_torchscript_archive(path: Path) -> bool:
    """Whether `path` is a TorchScript zip archive (it holds ``constants.pkl`` and a ``code/`` folder)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(name.endswith("/constants.pkl") for name in names) and any("/code/" in name for name in names)


def _unwrap(loaded, path: Path) -> dict:
    """The state dict inside a loaded PyTorch file: itself, or its ``model`` / ``state_dict`` entry."""
    if not isinstance(loaded, dict):
        raise ConversionError(f"{path}: expected a state dict or a checkpoint dict, found a {type(loaded).__name__}")
    for key in ("model", "state_dict"):
        if isinstance(loaded.get(key), dict):
            return loaded[key]
    return loaded


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of the checkpoint at `path` by name, with a ``module.`` prefix (DataParallel) removed.

    Raises:
        ConversionError: the file is missing, unreadable, or holds something other than tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        state = load_file(str(path))
    elif is_torchscript_archive(path):
        state = read_torchscript_tensors(path)
    else:
        try:
            state = _unwrap(torch.load(path, map_location="cpu", weights_only=True), path)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
            raise ConversionError(f"{path}: not a readable PyTorch state dict ({str(error).splitlines()[0]})") from None
    not_tensors = sorted(name for name, value in state.items() if not isinstance(value, torch.Tensor))
    if not_tensors:
        raise ConversionError(f"{path}: entries that are not tensors: {', '.join(map(str, not_tensors[:8]))}")
    if state and all(name.startswith("module.") for name in state):
        state = {name[len("module."):]: value for name, value in state.items()}
    return state
