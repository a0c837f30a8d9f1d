"""The errors tireid-hf raises when it cannot go on with what it was given.

Each message is one sentence naming the file, folder, option, field or missing package at fault and,
where there is one, what to do. Every such error is a :class:`TIReIDError`, so a front end (the
``tireid`` command, the demo Space, a notebook) can show it as one line and leave any other
exception's traceback alone:

* :class:`TIReIDInputError` (a ``ValueError``): a model folder, argument or option that cannot be
  used; ``DatasetFormatError`` (a dataset on disk), ``ConversionError`` (a reference checkpoint) and
  ``CheckpointError`` (a training checkpoint) are its kinds.
* ``HubUploadError`` (a ``RuntimeError``): an upload to the Hub cannot start.
"""


class TIReIDError(Exception):
    """tireid-hf cannot go on: an input it cannot use, or an optional package that is missing."""


class TIReIDInputError(TIReIDError, ValueError):
    """A model folder, argument or option that cannot be used; the message names it and the cause."""
