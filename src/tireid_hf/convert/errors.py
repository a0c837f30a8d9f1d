"""The error every converter raises."""

from ..errors import TIReIDInputError


class ConversionError(TIReIDInputError):
    """A checkpoint that cannot be converted; the message names the file and what is wrong."""
