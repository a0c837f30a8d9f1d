"""The conventions every ``tireid`` command follows, in one place.

* Every multi-word flag takes both spellings, ``--batch-size`` and ``--batch_size``, as ``train.py``'s
  do: :class:`ArgumentParser` adds the twin of each option it is given.
* Every refusal is one line ``tireid <command>: <message>`` on stderr and exit status 2: a bad argument
  (argparse's own errors included, without the usage text: ``--help`` shows it) and any
  :class:`~tireid_hf.errors.TIReIDError` a command raises. :func:`refusing` turns the standard
  exceptions a library call raises on bad input (an existing output folder, a missing file) into one.
  Any other exception shows its traceback.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from typing import Iterator, NoReturn

from ..errors import TIReIDError, TIReIDInputError


class CommandRefused(SystemExit):
    """The exit of a refused command: status 2; ``str()`` is the line printed on stderr."""

    def __init__(self, line: str):
        super().__init__(2)
        self.line = line

    def __str__(self) -> str:
        return self.line


def refuse(command: str, message: str) -> NoReturn:
    """Prints ``<command>: <message>`` (the message's lines joined into one) on stderr and exits with 2."""
    line = f"{command}: " + " ".join(part.strip() for part in message.splitlines() if part.strip())
    print(line, file=sys.stderr)
    raise CommandRefused(line)


@contextmanager
def refusing(*exceptions: type[Exception]) -> Iterator[None]:
    """Re-raises ``exceptions`` raised in the block (a library's answer to bad input) as a
    :class:`~tireid_hf.errors.TIReIDInputError` with the same message."""
    try:
        yield
    except exceptions as error:
        raise TIReIDInputError(str(error)) from error


def twin(option: str) -> str:
    """The other spelling of a long option: ``--batch-size`` <-> ``--batch_size`` (itself if one word)."""
    body = option[2:]
    return "--" + (body.replace("-", "_") if "-" in body else body.replace("_", "-"))


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with the conventions above; its subcommands' parsers are of this class too."""

    def add_argument(self, *names, **kwargs):
        """``add_argument`` with each long option's twin spelling added (the dest comes from the first)."""
        spellings = list(names)
        for name in names:
            if name.startswith("--") and twin(name) not in spellings:
                spellings.append(twin(name))
        return super().add_argument(*spellings, **kwargs)

    def _get_option_tuples(self, option_string: str) -> list:
        """argparse's options that ``option_string`` abbreviates, one per option: an abbreviation of a
        flag matches both its spellings, which is no ambiguity."""
        matches, actions = [], set()
        for match in super()._get_option_tuples(option_string):
            if match[0] not in actions:
                actions.add(match[0])
                matches.append(match)
        return matches

    def error(self, message: str) -> NoReturn:
        refuse(self.prog, message)


def add_command(subparsers, name: str, run, **kwargs) -> ArgumentParser:
    """A subcommand's parser: ``run(args)`` does its work; its refusals are prefixed with its full name."""
    parser = subparsers.add_parser(name, **kwargs)
    parser.set_defaults(run=run, command_name=parser.prog)
    return parser


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parses ``argv`` and runs the chosen command; a :class:`~tireid_hf.errors.TIReIDError` it raises is
    refused as one line (exit status 2)."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        refuse(args.command_name, f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return int(args.run(args) or 0)
    except TIReIDError as error:
        refuse(args.command_name, str(error))
