"""A saved tireid model and its processor, from a model folder or a Hub repo id, for the front ends
(``tireid`` commands, the demo Space) that take it as ``--model``."""

from __future__ import annotations

import math
from pathlib import Path

from .errors import TIReIDInputError
from .validation import ModelFolderError, check_safetensors, read_json

# The resampling filters of Pillow (NEAREST ... LANCZOS = 0 ... 5) an image processor may name.
_RESAMPLE_FILTERS = range(6)
_MAX_IMAGE_SIDE = 8192


def load_model_and_processor(model: str):
    """The model and processor saved in the folder (or Hub repo) ``model``, as ``(model, processor)``.

    Raises :class:`~tireid_hf.errors.TIReIDInputError`, one sentence naming ``--model``'s value and the
    cause, when ``model`` is a file, a folder without ``config.json``, neither a folder nor a valid Hub
    repo id, or a folder or repo whose model or processor does not load (the first line of transformers'
    error); a folder's files are checked first by :func:`check_model_folder` (a
    :class:`~tireid_hf.validation.ModelFolderError` naming the file and field), and a model whose weights
    file lacks some of its weights (or holds them in another shape) is refused.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id
    from transformers import AutoModel, AutoProcessor

    import tireid_hf  # noqa: F401  (registers the tireid model classes with the Auto classes)

    path = Path(model)
    if path.exists() and not path.is_dir():
        raise TIReIDInputError(f"--model {model} is a file; expected a model folder or a Hub repo id")
    if path.is_dir() and not (path / "config.json").is_file():
        raise TIReIDInputError(f"--model {model}: no config.json (expected a folder written by train.py or tireid push)")
    if path.is_dir():
        try:
            check_model_folder(path)
        except ModelFolderError as error:
            raise ModelFolderError(f"--model {model}: {error}") from None
    else:
        try:
            validate_repo_id(model)
        except HFValidationError as error:
            raise TIReIDInputError(f"--model {model}: no such folder (nor a Hub repo id)") from error
    where = "" if path.is_dir() else "no such folder, and as a Hub repo id: "
    try:
        loaded, info = AutoModel.from_pretrained(model, output_loading_info=True)
    except (OSError, ValueError) as error:  # transformers' "not found" and "unrecognized" errors
        files = "config.json and model.safetensors do not load together: " if path.is_dir() else ""
        raise TIReIDInputError(f"--model {model}: {where}{files}{str(error).splitlines()[0]}") from error
    try:
        processor = AutoProcessor.from_pretrained(model)
    except (OSError, ValueError) as error:
        files = "the processor (processor_config.json, tokenizer.json) does not load: " if path.is_dir() else ""
        raise TIReIDInputError(f"--model {model}: {where}{files}{str(error).splitlines()[0]}") from error
    absent = sorted(info["missing_keys"]) + sorted(str(key) for key in info["mismatched_keys"])
    if absent:
        raise ModelFolderError(f"--model {model}: model.safetensors lacks {len(absent)} of the model's weights or holds "
                               f"them in another shape (first: {absent[:3]}); save the model again with save_pretrained")
    return loaded, processor


def check_model_folder(folder: str | Path) -> None:
    """Checks a saved model folder before transformers reads it; raises
    :class:`~tireid_hf.validation.ModelFolderError` naming the file and field at fault.

    * ``config.json``: a JSON object whose ``model_type`` is a registered tireid method, ``clip_config``
      an object, ``auto_map`` names mapped to strings, its fields
      passing the method config's ``check_config_dict`` (types, ranges, size of the model);
    * the processor (``processor_config.json`` or ``preprocessor_config.json``): image ``size`` and
      ``crop_size`` of positive whole ``height``/``width`` (or ``shortest_edge``) up to 8192, ``image_mean``
      and ``image_std`` of 3 finite numbers (std > 0), ``rescale_factor`` a finite number > 0, ``resample``
      a Pillow filter 0-5, ``do_*`` switches true or false, class names strings;
    * ``tokenizer_config.json`` a JSON object (``model_max_length`` a whole number >= 1, special tokens
      strings, not null) and ``tokenizer.json`` a tokenizer the ``tokenizers`` library parses;
    * the weights: ``model.safetensors`` (or the shards its ``.index.json`` lists) passing
      :func:`~tireid_hf.validation.check_safetensors`; a folder with only a pickle (``pytorch_model.bin``)
      is refused.
    """
    from .modeling import METHODS

    folder = Path(folder)
    config = read_json(folder / "config.json", ModelFolderError)
    known = {config_class.model_type: config_class for config_class, _ in METHODS.values()}
    config_class = known.get(config.get("model_type"))
    if config_class is None:
        raise ModelFolderError(f"{folder / 'config.json'}: model_type must be one of {sorted(known)}, "
                               f"got {config.get('model_type')!r}")
    if not isinstance(config.get("clip_config"), dict):
        raise ModelFolderError(f"{folder / 'config.json'}: clip_config must be a JSON object (the CLIP backbone's "
                               f"config), got {config.get('clip_config')!r}")
    _check_auto_map(config, folder / "config.json")
    try:
        config_class.check_config_dict(config)
    except ValueError as error:
        raise ModelFolderError(f"{folder / 'config.json'}: {error}") from None
    for name in ("processor_config.json", "preprocessor_config.json"):
        if (folder / name).is_file():
            processor = read_json(folder / name, ModelFolderError)
            _check_auto_map(processor, folder / name)
            for key in ("processor_class", "image_processor_type"):
                if not isinstance(processor.get(key, ""), str):
                    raise ModelFolderError(f"{folder / name}: {key} must be a string, got {processor[key]!r}")
            _check_image_processor(processor.get("image_processor", processor), folder / name)
    if (folder / "tokenizer_config.json").is_file():
        _check_tokenizer_config(read_json(folder / "tokenizer_config.json", ModelFolderError), folder / "tokenizer_config.json")
    if (folder / "tokenizer.json").is_file():
        _check_tokenizer(folder / "tokenizer.json")
    _check_weights(folder)


def _check_auto_map(settings: dict, path: Path) -> None:
    """``auto_map`` (where present) maps Auto class names to ``module.Class`` strings (a tokenizer's: a
    list of such strings or nulls)."""
    auto_map = settings.get("auto_map", {})
    if not (isinstance(auto_map, dict) and all(
            isinstance(target, str) or (isinstance(target, list) and all(item is None or isinstance(item, str) for item in target))
            for target in auto_map.values())):
        raise ModelFolderError(f"{path}: auto_map must map Auto class names to \"module.Class\" strings, got {auto_map!r}")


def _check_image_processor(settings, path: Path) -> None:
    if not isinstance(settings, dict):
        raise ModelFolderError(f"{path}: image_processor must be a JSON object, got {type(settings).__name__}")
    for name in ("size", "crop_size"):
        size = settings.get(name)
        if size is None:
            continue
        sides = {key: size.get(key) for key in ("height", "width", "shortest_edge") if key in size} if isinstance(size, dict) else {}
        if not sides or not all(type(side) is int and 1 <= side <= _MAX_IMAGE_SIDE for side in sides.values()):
            raise ModelFolderError(f"{path}: {name} must be {{\"height\": H, \"width\": W}} (or {{\"shortest_edge\": S}}) "
                                   f"of whole numbers in [1, {_MAX_IMAGE_SIDE}], got {size!r}")
    for name in ("image_mean", "image_std"):
        values = settings.get(name)
        if values is None:
            continue
        if not (isinstance(values, list) and len(values) == 3 and all(_finite(value) for value in values)
                and (name == "image_mean" or all(value > 0 for value in values))):
            allowed = "3 finite numbers" + (" > 0" if name == "image_std" else "")
            raise ModelFolderError(f"{path}: {name} must be a list of {allowed} (one per RGB channel), got {values!r}")
    factor = settings.get("rescale_factor")
    if factor is not None and not (_finite(factor) and factor > 0):
        raise ModelFolderError(f"{path}: rescale_factor must be a finite number > 0, got {factor!r}")
    resample = settings.get("resample")
    if resample is not None and not (type(resample) is int and resample in _RESAMPLE_FILTERS):
        raise ModelFolderError(f"{path}: resample must be a Pillow filter number 0-5 (3: bicubic), got {resample!r}")
    if not isinstance(settings.get("image_processor_type", ""), str):
        raise ModelFolderError(f"{path}: image_processor_type must be a string, got {settings['image_processor_type']!r}")
    for name, value in settings.items():
        if name.startswith("do_") and value is not None and not isinstance(value, bool):
            raise ModelFolderError(f"{path}: {name} must be true or false, got {value!r}")


def _check_tokenizer_config(settings: dict, path: Path) -> None:
    _check_auto_map(settings, path)
    length = settings.get("model_max_length")
    if length is not None and not (type(length) is int and length >= 1):
        raise ModelFolderError(f"{path}: model_max_length must be a whole number >= 1, got {length!r}")
    for name in ("bos_token", "eos_token", "pad_token", "unk_token", "tokenizer_class", "processor_class"):
        value = settings.get(name, "")
        if (value is not None or name.endswith("_token")) and not isinstance(value, str) and not (isinstance(value, dict) and isinstance(value.get("content"), str)):
            raise ModelFolderError(f"{path}: {name} must be a string, got {value!r}")
    added = settings.get("added_tokens_decoder", {})
    if not (isinstance(added, dict) and all(isinstance(token, dict) and isinstance(token.get("content"), str)
                                            for token in added.values())):
        raise ModelFolderError(f"{path}: added_tokens_decoder must map token ids to {{\"content\": string, ...}} objects")


def _check_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer

    read_json(path, ModelFolderError)
    try:
        Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers reports a malformed file as a bare Exception
        raise ModelFolderError(f"{path}: not a tokenizer the tokenizers library can read ({error})") from None


def _check_weights(folder: Path) -> None:
    weights, shards = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if shards.is_file():
        weight_map = read_json(shards, ModelFolderError).get("weight_map")
        if not (isinstance(weight_map, dict) and weight_map and all(isinstance(name, str) and "/" not in name
                                                                      for name in weight_map.values())):
            raise ModelFolderError(f"{shards}: weight_map must map every weight to a shard file name of this folder")
        for name in sorted(set(weight_map.values())):
            check_safetensors(folder / name, ModelFolderError)
    elif weights.exists():
        check_safetensors(weights, ModelFolderError)
    else:
        pickles = sorted(path.name for path in folder.glob("pytorch_model*.bin"))
        found = f" (only the pickle {pickles[0]}, which tireid-hf does not load)" if pickles else ""
        raise ModelFolderError(f"{weights} is missing{found}: save the model with save_pretrained (safetensors)")


def _finite(value) -> bool:
    return (type(value) is float and math.isfinite(value)) or (type(value) is int and abs(value) <= 2**53)
