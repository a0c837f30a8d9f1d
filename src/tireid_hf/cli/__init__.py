"""The ``tireid`` console script: one subcommand per job (``tireid --help`` lists them).

A thin shell over the library: each module declares one family of commands and runs library functions;
:mod:`.shell` holds the conventions they share (both spellings of every multi-word flag; every refusal
one line ``tireid <command>: <message>`` on stderr, exit status 2) and :mod:`.arguments` the arguments
several commands take.
"""

from __future__ import annotations

from .. import __version__
from .data import add_data_parser
from .evaluation import add_evaluate_parser, add_visualize_parser
from .hub import add_cards_parser, add_push_parsers
from .models import add_convert_parser, add_export_parser, add_pretrain_base_parser
from .search import add_index_parser, add_search_parser
from .shell import ArgumentParser, run_command


def build_parser() -> ArgumentParser:
    """The ``tireid`` parser with every subcommand."""
    parser = ArgumentParser(prog="tireid", description="Text-to-image person re-identification zoo.")
    parser.add_argument("--version", action="version", version=f"tireid-hf {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    add_data_parser(subparsers)
    add_evaluate_parser(subparsers)
    add_visualize_parser(subparsers)
    add_index_parser(subparsers)
    add_export_parser(subparsers)
    add_search_parser(subparsers)
    add_push_parsers(subparsers)
    add_convert_parser(subparsers)
    add_cards_parser(subparsers)
    add_pretrain_base_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs ``tireid ARGV``; returns its exit status (a refusal exits with 2, see :mod:`.shell`)."""
    return run_command(build_parser(), argv)

