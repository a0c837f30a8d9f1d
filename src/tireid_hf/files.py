"""File helpers shared by the whole package (training, checkpoints, retrieval, the command line, the
Hub writers, the converters, the dataset readers): atomic writes, file hashes, and paths read from an input
that must stay inside its folder.

Write a whole output folder or file, or nothing: build it under a temporary sibling name, then rename.
Files written this way get the permissions of a plain ``open(..., "w")`` (``0o666`` less the umask),
not the ``0o600`` / ``0o700`` of the temporary names (``mkstemp``, ``mkdtemp``, and the temporary files
``save_pretrained`` writes its weights through) that a rename would otherwise carry over.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from .errors import TIReIDInputError


def sha256_of_file(path: Path) -> str:
    """Hex SHA-256 of the file at ``path``, read in 1 MiB blocks (never the whole file in memory)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def give_usual_permissions(path: str | os.PathLike) -> None:
    """``chmod`` `path` (and, for a folder, everything under it) to what ``open``/``mkdir`` would have
    made: files ``0o666 & ~umask``, folders ``0o777 & ~umask``. Symbolic links are left alone."""
    umask = _umask()
    path = Path(path)
    paths = [path, *path.rglob("*")] if path.is_dir() and not path.is_symlink() else [path]
    for item in paths:
        if item.is_symlink():
            continue
        item.chmod((0o777 if item.is_dir() else 0o666) & ~umask)


@contextlib.contextmanager
def atomic_directory(out: str | os.PathLike, *, overwrite: bool = False,
                     overwrite_hint: str = "pass overwrite=True, or --overwrite on the command line, to replace it") -> Iterator[Path]:
    """Yields an empty temporary folder next to `out`, renamed to `out` when the block succeeds.

    On any exception the temporary folder is deleted and `out` is left as it was. `out` must not
    exist unless `overwrite`, in which case the old folder is replaced only after success (the error
    otherwise ends with `overwrite_hint`, e.g. the command-line option that allows it).
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists ({overwrite_hint})")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        yield tmp
        give_usual_permissions(tmp)
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            out.rename(old / out.name)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_file(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(temporary_path)`` next to ``path``, then rename the result to ``path``; on any
    exception the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        give_usual_permissions(temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def atomic_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` (UTF-8) to `path` through :func:`atomic_file`."""
    atomic_file(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))


class OutsideRootError(TIReIDInputError):
    """A path read from an input that resolves outside the folder it must stay in."""


def resolve_inside(root: str | os.PathLike, path: str | os.PathLike, what: str = "the folder") -> Path:
    """`path` (relative to `root`, or absolute) resolved, symbolic links included, when the result
    lies inside `root` (itself resolved); otherwise raises :class:`OutsideRootError`: "`path` resolves
    to ..., outside `what` `root`".

    The check is on where the file really is, not on the path string: ``imgs/a.jpg`` that is a link
    to ``/etc/passwd`` is refused as ``../../etc/passwd`` is."""
    root = Path(root).resolve()
    resolved = (root / path).resolve()
    if root not in resolved.parents:
        raise OutsideRootError(f"{path} resolves to {resolved}, outside {what} {root}")
    return resolved
