"""The numbers an argument may take, described once and checked the same way everywhere.

A :class:`NumberRange` checks a value already read (``train.py``'s argument dataclasses, a YAML config,
a library call: :meth:`NumberRange.check` raises :class:`~tireid_hf.errors.TIReIDInputError` naming the
argument) and is itself an argparse ``type`` (the ``tireid`` command's flags: argparse reports
``argument --flag: must be ..., got ...``). Every range holds finite numbers only (no NaN, no infinity)
and no booleans (YAML's ``true`` is not a batch size).
"""

from __future__ import annotations

import argparse
import math
import numbers
from dataclasses import dataclass

from .errors import TIReIDInputError


def _number_text(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() and abs(bound) < 2**53 else str(bound)


@dataclass(frozen=True)
class NumberRange:
    """Numbers ``>= low`` (``> low`` with ``low_open``) and ``<= high`` (``< high`` with ``high_open``),
    the bounds that are given; integers only with ``integer``; ``kind`` names what the number is in
    messages (default: ``an integer`` or ``a finite number``).

    >>> NumberRange(low=0, low_open=True).check("learning_rate", -0.001)
    Traceback (most recent call last):
    tireid_hf.errors.TIReIDInputError: learning_rate must be > 0, got -0.001
    """

    integer: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    kind: str | None = None

    def condition(self) -> str:
        """The bounds as text: ``>= 1``, ``> 0``, ``in [0, 1)``, or ``finite`` without bounds."""
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{_number_text(self.low)}, "
                    f"{_number_text(self.high)}{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {_number_text(self.low)}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {_number_text(self.high)}"
        return "finite"

    def __str__(self) -> str:
        """The whole description: ``an integer >= 1``, ``a finite number in (0, 1]``, ``a false-positive rate in (0, 1)``."""
        kind = self.kind or ("an integer" if self.integer else "a finite number")
        condition = self.condition()
        return kind if condition == "finite" else f"{kind} {condition}"

    def _of_kind(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if isinstance(value, numbers.Integral):
            return True
        return not self.integer and math.isfinite(value)

    def _in_bounds(self, value) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def problem(self, value) -> str | None:
        """None when ``value`` is in the range, else what it must be: the bounds alone (``>= 1``) for a
        number of the right kind, the whole description (``an integer >= 1``) for anything else."""
        if not self._of_kind(value):
            return str(self)
        if not self._in_bounds(value):
            return str(self) if self.kind else self.condition()
        return None

    def check(self, name: str, value):
        """``value`` when it is in the range; else a :class:`~tireid_hf.errors.TIReIDInputError`
        ``<name> must be <what it must be>, got <value>``."""
        problem = self.problem(value)
        if problem is not None:
            raise TIReIDInputError(f"{name} must be {problem}, got {value!r}")
        return value

    def __call__(self, text: str):
        """As an argparse ``type``: ``text`` read as an int (``integer``) or a float, in the range; else an
        ``ArgumentTypeError`` ``must be <what it must be>, got <text>`` (argparse names the flag)."""
        try:
            value = int(text) if self.integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {self}, got {text!r}") from None
        problem = self.problem(value)
        if problem is not None:
            raise argparse.ArgumentTypeError(f"must be {problem}, got {text}")
        return value


POSITIVE_INTEGER = NumberRange(integer=True, low=1)
NON_NEGATIVE_INTEGER = NumberRange(integer=True, low=0)
POSITIVE = NumberRange(low=0, low_open=True)
NON_NEGATIVE = NumberRange(low=0)
FINITE = NumberRange()
