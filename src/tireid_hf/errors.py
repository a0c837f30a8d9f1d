"""The errors tireid-hf raises when it cannot go on with what it was given.

Each message is one sentence naming the file, folder, option, field or missing package at fault and,
where there is one, what to do. Every such error is a :class:`TIReIDError`, so a front end (the
``tireid`` command, the demo Space, a notebook) can show it as one line and leave any other
exception's traceback alone:

* :class:`TIReIDInputError` (a ``ValueError``): a model folder, argument or option that cannot be
  used; ``DatasetFormatError`` (a dataset on disk), ``ConversionError`` (a reference checkpoint) and
  ``CheckpointError`` (a training checkpoint) are its kinds.
* ``HubUploadError`` (a ``RuntimeError``): an upload to the Hub cannot start.

:func:`one_line` is the line every front end shows for such an error or an ``OSError`` (a full disk, a
read-only folder), and :func:`refused_as_one_line` the block that shows it and exits with status 2.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator, NoReturn


class TIReIDError(Exception):
    """tireid-hf cannot go on: an input it cannot use, or an optional package that is missing."""


class TIReIDInputError(TIReIDError, ValueError):
    """A model folder, argument or option that cannot be used; the message names it and the cause."""


def one_line(error: BaseException) -> str | None:
    """The one line a front end (``tireid``, ``train.py``, the Space) shows for ``error`` instead of a
    traceback, or None where ``error`` is a bug the front end must re-raise.

    * a :class:`TIReIDError`: its message, its lines joined into one;
    * an ``OSError`` with an ``errno`` (no space left, read-only file system, permission denied, no such
      file...): ``<path>: <the cause, os.strerror(errno)>`` (``<path> -> <second path>`` for a rename);
      without one (raised with a sentence, e.g. ``FileNotFoundError("--images x: no such folder")``):
      that sentence;
    * anything else: None.
    """
    if isinstance(error, OSError) and error.errno is not None:
        cause = os.strerror(error.errno)
        if error.filename is None:
            return _joined(error.strerror or cause)
        paths = os.fsdecode(error.filename) + ("" if error.filename2 is None else f" -> {os.fsdecode(error.filename2)}")
        return _joined(f"{paths}: {cause}")
    if isinstance(error, (TIReIDError, OSError)):
        return _joined(str(error) or type(error).__name__)
    return None


def _joined(message: str) -> str:
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


class Refused(SystemExit):
    """The exit of a refused front-end command: status 2; ``str()`` is the line printed on stderr."""

    def __init__(self, line: str):
        super().__init__(2)
        self.line = line

    def __str__(self) -> str:
        return self.line


def refuse(program: str, message: str) -> NoReturn:
    """Prints ``<program>: <message>`` (the message's lines joined into one) on stderr and exits with 2
    (raises :class:`Refused`)."""
    line = f"{program}: {_joined(message)}"
    print(line, file=sys.stderr)
    raise Refused(line)


@contextmanager
def refused_as_one_line(program: str, *, speak: bool = True) -> Iterator[None]:
    """Runs the block of a front end: an error :func:`one_line` has a line for ends the program with
    that line (``<program>: <line>`` on stderr, exit status 2; with ``speak=False``, as on the ranks of a
    distributed run but the first, exit status 2 and nothing printed); any other exception propagates
    with its traceback."""
    try:
        yield
    except (TIReIDError, OSError) as error:
        line = one_line(error)
        if not speak:
            raise Refused(f"{program}: {line}") from None
        refuse(program, line)


@contextmanager
def refusing(*exceptions: type[Exception]) -> Iterator[None]:
    """Re-raises ``exceptions`` raised in the block (a library's answer to bad input) as a
    :class:`TIReIDInputError` with the same message."""
    try:
        yield
    except exceptions as error:
        raise TIReIDInputError(str(error)) from error
