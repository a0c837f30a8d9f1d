"""File helpers shared by the whole package (training, checkpoints, retrieval, the command line, the
Hub writers, the converters, the dataset readers): output folders written whole by one writer at a time,
atomic files, file hashes, and paths read from an input that must stay inside its folder.

Write a whole output folder or file, or nothing: build it under a temporary sibling name, then rename.
Files written this way get the permissions of a plain ``open(..., "w")`` (``0o666`` less the umask),
not the ``0o600`` / ``0o700`` of the temporary names (``mkstemp``, ``mkdtemp``, and the temporary files
``save_pretrained`` writes its weights through) that a rename would otherwise carry over.

An output folder ``parent/name`` has, while it is written, these siblings:

* ``.name.lock`` (:func:`writer_lock`): one writer at a time. The writing process holds the kernel's
  ``flock`` on it, which ends with the process however it ends (``kill -9`` included), and records in it
  its pid, host, command line and start time. A second writer is refused naming them; a lock file left
  by a process that is gone is taken over, with a warning naming it.
* ``.name.tmp-XXXX``: the new folder being built (:func:`atomic_directory`).
* ``.name.journal`` and ``.name.old-XXXX``: replacing an existing folder (``overwrite=True``) takes two
  renames (old folder aside, new folder in); the journal, written before the first, names both, so the
  next writer of the folder completes the replacement (:func:`finish_replacement`) whatever step a kill
  stopped it at. Until then the folder holds the old content or the new, or is absent with both complete
  beside it; never a mix.

:func:`refuse_overlap` refuses, before anything is touched, an output that is, contains or lies inside one
of a command's inputs.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Collection, Iterator, Mapping

from .errors import TIReIDInputError
from .faults import kill_point

# The steps of a replacement (overwrite=True) a kill test stops at, in order (faults.kill_point names):
# journal written; old folder renamed aside; new folder renamed in; old folder deleted (journal not yet).
REPLACE_STEPS = ("replace_journal_written", "replace_old_aside", "replace_new_in", "replace_old_removed")

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


class FolderInUseError(TIReIDInputError):
    """An output folder another running process is writing (the holder of its :func:`writer_lock`)."""


class OverlappingOutputError(TIReIDInputError):
    """An output that is, contains or lies inside one of the command's inputs."""


_HELD: set[Path] = set()  # outputs whose writer lock this process holds


def _target(out: str | os.PathLike) -> Path:
    """`out` as an absolute path with its parent's symbolic links resolved (not its own: replacing a link
    replaces the link)."""
    absolute = Path(os.path.abspath(out))
    return Path(os.path.realpath(absolute.parent)) / absolute.name


def _sibling(target: Path, suffix: str) -> Path:
    return target.with_name(f".{target.name}{suffix}")


def lock_path(out: str | os.PathLike) -> Path:
    """The lock file of the output `out`: ``.<name>.lock`` beside it (see :func:`writer_lock`)."""
    return _sibling(_target(out), ".lock")


def _read_holder(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    if "pid" not in holder:
        return "a process that has not recorded itself yet"
    return (f"pid {holder['pid']} on {holder.get('host', '?')} ({holder.get('command', '?')}, "
            f"started {holder.get('started', '?')})")


@contextlib.contextmanager
def writer_lock(out: str | os.PathLike) -> Iterator[None]:
    """Holds the writer lock of the output `out` (a folder, existing or not) for the block.

    The lock is the sibling file ``.<name>.lock`` (it outlives the renames of `out` itself), held with
    ``flock`` by this process and naming it (pid, host, command line, start time). Another live writer
    makes it raise :class:`FolderInUseError` naming `out` and that writer's pid and command; a lock file
    whose process is gone is taken over with a warning naming the dead pid. Within one process the lock
    of `out` or of a folder holding it is re-entrant (the outer holder covers the block). The lock file is
    deleted when the block ends."""
    target = _target(out)
    if any(held == target or held in target.parents for held in _HELD):
        yield
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    path = lock_path(target)
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise FolderInUseError(f"{out} is being written by another process, {_describe(_read_holder(path))}: "
                                   "wait until it ends, or choose another output") from None
        try:  # the file locked is still the one at `path` (not one its holder deleted meanwhile)
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        locked = os.fstat(descriptor)
        if current is not None and (current.st_dev, current.st_ino) == (locked.st_dev, locked.st_ino):
            break
        os.close(descriptor)
    try:
        previous = _read_holder(path)
        if previous:
            warnings.warn(f"{out}: taking over the lock left by {_describe(previous)}, which is no longer running",
                          stacklevel=3)
        record = dict(pid=os.getpid(), host=socket.gethostname(), command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                      started=datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(record).encode(), 0)
        _HELD.add(target)
        try:
            yield
        finally:
            _HELD.discard(target)
            path.unlink(missing_ok=True)
    finally:
        os.close(descriptor)


def refuse_overlap(output: str | os.PathLike, output_argument: str,
                   inputs: Mapping[str, str | os.PathLike | None], *, may_lie_inside: Collection[str] = ()) -> None:
    """Raises :class:`OverlappingOutputError`, naming both arguments, when the output `output` (given as
    `output_argument`) is, contains or lies inside one of `inputs` (argument -> path); inside the inputs
    named in `may_lie_inside` is allowed (a photo folder's own index). Paths are compared resolved,
    symbolic links included. Inputs that are None or not on this disk (a Hub id, a dataset name) are
    skipped. Call it before anything is written."""
    out = Path(os.path.realpath(output))
    for argument, given in inputs.items():
        if given is None or not os.path.lexists(given):
            continue
        source = Path(os.path.realpath(given))
        if out == source:
            relation = "is"
        elif out in source.parents:
            relation = "contains"
        elif source in out.parents and argument not in may_lie_inside:
            relation = "lies inside"
        else:
            continue
        resolved = (str(out), str(source)) != (os.path.abspath(output), os.path.abspath(given))
        where = f" (resolved: {out} and {source})" if resolved else ""
        raise OverlappingOutputError(f"{output_argument} {output} {relation} {argument} {given}{where}: an output "
                                     f"must not overlap an input; choose another {output_argument}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def finish_replacement(out: str | os.PathLike) -> None:
    """Completes what a killed writer of the output folder `out` left, under :func:`writer_lock`: a
    replacement whose journal was written is carried to its end (the new folder moved in, the old one
    deleted), and the temporary siblings of a build or replacement cut short before that are deleted,
    so `out` is again the old folder or the new one, complete. Called by :func:`atomic_directory`
    before it writes; a folder with nothing left over is not touched."""
    target = _target(out)
    with writer_lock(target):
        journal = _sibling(target, ".journal")
        if journal.is_file():
            names = json.loads(journal.read_text(encoding="utf-8"))
            old, new = target.with_name(names["old"]), target.with_name(names["new"])
            if new.is_dir():  # the new folder is complete but not moved in yet
                if os.path.lexists(target) and not os.path.lexists(old):
                    os.rename(target, old)
                os.rename(new, target)
            elif not os.path.lexists(target) and os.path.lexists(old):  # nothing else left: keep the old one
                os.rename(old, target)
            if os.path.lexists(old):
                _remove(old)
            journal.unlink()
        prefixes = (f".{target.name}.tmp-", f".{target.name}.old-", f"..{target.name}.journal.")  # the last: atomic_text's
        if target.parent.is_dir():
            for leftover in target.parent.iterdir():
                if leftover.name.startswith(prefixes):
                    _remove(leftover)


@contextlib.contextmanager
def atomic_directory(out: str | os.PathLike, *, overwrite: bool = False,
                     overwrite_hint: str = "pass overwrite=True, or --overwrite on the command line, to replace it") -> Iterator[Path]:
    """Yields an empty temporary folder next to `out`, renamed to `out` when the block succeeds.

    The whole call holds `out`'s :func:`writer_lock` (another writer of `out` is refused) and starts with
    :func:`finish_replacement`. On any exception in the block the temporary folder is deleted and `out` is
    left as it was. `out` must not exist unless `overwrite` (the error otherwise ends with
    `overwrite_hint`, e.g. the command-line option that allows it); an existing `out` is replaced only
    after success, through the journal (``.<name>.journal``, then old folder aside, new folder in, old
    folder deleted, journal deleted), so a kill at any step leaves the old folder or the new one complete.
    """
    target = _target(out)
    with writer_lock(out):
        finish_replacement(target)
        if target.exists() and not overwrite:
            raise FileExistsError(f"{out} already exists ({overwrite_hint})")
        if target.exists() and not target.is_dir():
            raise NotADirectoryError(f"{out} exists and is not a folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
        try:
            yield tmp
            give_usual_permissions(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if os.path.lexists(target):
            _replace(target, tmp)
        else:
            tmp.rename(target)


def _replace(out: Path, new: Path) -> None:
    """The journaled replacement of `out` by the complete folder `new` (its sibling)."""
    old = out.with_name(f".{out.name}.old-{new.name.rpartition('.tmp-')[2]}")
    journal = _sibling(out, ".journal")
    atomic_text(journal, json.dumps({"old": old.name, "new": new.name}))
    kill_point(REPLACE_STEPS[0])
    os.rename(out, old)
    kill_point(REPLACE_STEPS[1])
    os.rename(new, out)
    kill_point(REPLACE_STEPS[2])
    _remove(old)
    kill_point(REPLACE_STEPS[3])
    journal.unlink()


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
