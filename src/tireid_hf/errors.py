"""The errors tireid-hf raises when an input cannot be used.

Each message is one sentence naming the file, folder, option or field at fault and, where there is
one, what to do. Every such error is a :class:`TIReIDError`, so a front end (the ``tireid`` command,
the demo Space, a notebook) can show it as one line and leave any other exception's traceback alone:

* :class:`TIReIDInputError` (a ``ValueError``): a model folder, argument or option that cannot be
  used; ``DatasetFormatError`` (a dataset on disk), ``ConversionError`` (a reference checkpoint) and
  ``CheckpointError`` (a training checkpoint) are its kinds.
* ``HubUploadError`` (a ``RuntimeError``): an upload to the Hub cannot start.
"""


class TIReIDError(Exception):
    """An input tireid-hf cannot use; the message says which and why."""


class TIReIDInputError(TIReIDError, ValueError):
    """A model folder, argument or option that cannot be used; the message names it and the cause."""
