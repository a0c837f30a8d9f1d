"""A saved tireid model and its processor, from a model folder or a Hub repo id, for the front ends
(``tireid`` commands, the demo Space) that take it as ``--model``."""

from __future__ import annotations

from pathlib import Path

from .errors import TIReIDInputError


def load_model_and_processor(model: str):
    """The model and processor saved in the folder (or Hub repo) ``model``, as ``(model, processor)``.

    Raises :class:`~tireid_hf.errors.TIReIDInputError`, one sentence naming ``--model``'s value and the
    cause, when ``model`` is a file, a folder without ``config.json``, neither a folder nor a valid Hub
    repo id, or a folder or repo whose model or processor does not load (the first line of transformers'
    error).
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id
    from transformers import AutoModel, AutoProcessor

    import tireid_hf  # noqa: F401  (registers the tireid model classes with the Auto classes)

    path = Path(model)
    if path.exists() and not path.is_dir():
        raise TIReIDInputError(f"--model {model} is a file; expected a model folder or a Hub repo id")
    if path.is_dir() and not (path / "config.json").is_file():
        raise TIReIDInputError(f"--model {model}: no config.json (expected a folder written by train.py or tireid push)")
    if not path.is_dir():
        try:
            validate_repo_id(model)
        except HFValidationError as error:
            raise TIReIDInputError(f"--model {model}: no such folder (nor a Hub repo id)") from error
    try:
        return AutoModel.from_pretrained(model), AutoProcessor.from_pretrained(model)
    except (OSError, ValueError) as error:  # transformers' "not found" and "unrecognized" errors
        where = "" if path.is_dir() else "no such folder, and as a Hub repo id: "
        raise TIReIDInputError(f"--model {model}: {where}{str(error).splitlines()[0]}") from error
