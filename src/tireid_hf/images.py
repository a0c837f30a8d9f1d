"""The one way tireid-hf opens an image file it was given (a gallery folder, a dataset, an upload).

:func:`read_image` decodes the whole image, so a file that is not an image, is truncated or damaged,
or declares more pixels than Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``:
Pillow warns above it and refuses above twice it; both are refused here, before anything is
decoded) raises :class:`ImageFileError` naming the file and the cause, instead of whatever Pillow
raises for it.

>>> image = read_image("photos/0001.jpg")          # doctest: +SKIP
"""

from __future__ import annotations

import os
import struct
import warnings
from typing import IO

from PIL import Image

from .errors import TIReIDInputError

__all__ = ["ImageFileError", "read_image"]

# what Pillow's format plugins and decoders raise for a file that is not a well-formed image
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, ZeroDivisionError,
                  struct.error, Image.DecompressionBombError, Image.DecompressionBombWarning)


class ImageFileError(TIReIDInputError):
    """An image file that cannot be used: ``str()`` is ``<name>: <reason>``."""

    def __init__(self, name: str, reason: str):
        super().__init__(name, reason)
        self.name, self.reason = name, reason

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


def read_image(file: str | os.PathLike | IO[bytes], name: str | None = None) -> Image.Image:
    """The image in ``file`` (a path, or a binary file object called ``name`` in messages), fully decoded,
    as an RGB ``PIL.Image``; :class:`ImageFileError` naming it where it cannot be one (see the module
    docstring)."""
    shown = name if name is not None else os.fsdecode(file) if isinstance(file, (str, bytes, os.PathLike)) else "image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                return image.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageFileError(shown, f"declares more pixels than the {Image.MAX_IMAGE_PIXELS} an image may have "
                             "(PIL.Image.MAX_IMAGE_PIXELS, a decompression-bomb guard); not read") from None
    except Image.UnidentifiedImageError:
        raise ImageFileError(shown, "not an image Pillow can read (JPEG, PNG, WebP, BMP ...)") from None
    except OSError as error:
        if error.errno is not None:  # the file itself: missing, unreadable
            raise ImageFileError(shown, f"cannot be read ({os.strerror(error.errno)})") from None
        raise ImageFileError(shown, f"truncated or damaged image ({error})") from None
    except _DECODE_ERRORS as error:
        raise ImageFileError(shown, f"damaged image ({type(error).__name__}: {error})") from None
