"""The conventions every ``tireid`` command follows, in one place.

* Every multi-word flag takes both spellings, ``--batch-size`` and ``--batch_size``, as ``train.py``'s
  do: :class:`ArgumentParser` adds the twin of each option it is given.
* Every refusal is one line ``tireid <command>: <message>`` on stderr and exit status 2: a bad argument
  (argparse's own errors included, without the usage text: ``--help`` shows it), any
  :class:`~tireid_hf.errors.TIReIDError` a command raises and any ``OSError`` (a full disk, a read-only
  or missing path: the path and the cause; :func:`~tireid_hf.errors.one_line`). :func:`~tireid_hf.errors.refusing` turns the standard
  exceptions a library call raises on bad input (an existing output folder, a missing file) into one.
  Any other exception shows its traceback.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from ..errors import refuse, refused_as_one_line, refusing  # noqa: F401  (refusing: the commands' modules import it from here)


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


def add_command_group(subparsers, name: str, dest: str, metavar: str, **kwargs):
    """A command whose subcommands do the work (``tireid data prepare``): returns the subparsers to add them
    to with :func:`add_command`; naming one of them is required."""
    group = subparsers.add_parser(name, **kwargs).add_subparsers(dest=dest, metavar=metavar)
    group.required = True
    return group


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parses ``argv`` and runs the chosen command; a :class:`~tireid_hf.errors.TIReIDError` or an
    ``OSError`` it raises is refused as one line (exit status 2), any other exception keeps its traceback."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        refuse(args.command_name, f"unrecognized arguments: {' '.join(unknown)}")
    with refused_as_one_line(args.command_name):
        return int(args.run(args) or 0)
