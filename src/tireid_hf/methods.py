"""The one list of methods: everything that enumerates methods (training arguments, the zoo, the
report, the model cards, the tests) reads it here.

A method is three files: ``modeling/configuration_<name>.py`` (``XConfig(TIReIDConfig)``,
``model_type = "tireid-<name>"``), ``modeling/modeling_<name>.py`` (``XModel(TIReIDPreTrainedModel)``
with its ``compute_losses``) and its model-card section ``hub/cards/methods/<name>.md``. The
package's own methods are listed in ``modeling/__init__.py`` (``METHODS``, registry order); a method
defined elsewhere joins with :func:`register_method`.
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import AutoConfig, AutoModel, AutoProcessor

from .modeling import METHODS, TIReIDConfig, TIReIDPreTrainedModel
from .processing import TIReIDProcessor

CARD_SECTIONS = Path(__file__).resolve().parent / "hub" / "cards" / "methods"
_card_sections: dict[str, Path] = {}


def method_names() -> list[str]:
    """Names of every registered method, in registry order (the zoo's tables and cards follow it)."""
    return list(METHODS)


def method_classes(name: str) -> tuple[type[TIReIDConfig], type[TIReIDPreTrainedModel]]:
    """``(config class, model class)`` of method ``name``; a ValueError naming the known ones otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {sorted(METHODS)}")
    return METHODS[name]


def card_section_path(name: str) -> Path:
    """The method's model-card section: the one given to :func:`register_method`, else
    ``hub/cards/methods/<name>.md`` of the package."""
    method_classes(name)
    return _card_sections.get(name, CARD_SECTIONS / f"{name}.md")


def register_method(name: str, config_class: type[TIReIDConfig], model_class: type[TIReIDPreTrainedModel],
                    card_section: str | os.PathLike | None = None) -> None:
    """Adds a method to the registry and to ``AutoConfig`` / ``AutoModel`` / ``AutoProcessor``.

    Args:
        name: the method's name (``train.py --method``); its config's ``model_type`` must be ``tireid-<name>``.
        config_class / model_class: subclasses of ``TIReIDConfig`` / ``TIReIDPreTrainedModel``, the model
            class's ``config_class`` being ``config_class`` and its ``compute_losses`` implemented.
        card_section: the Markdown section of its model cards (default ``hub/cards/methods/<name>.md``).
    """
    if not (isinstance(config_class, type) and issubclass(config_class, TIReIDConfig)):
        raise TypeError(f"register_method({name!r}): config_class must subclass TIReIDConfig, got {config_class!r}")
    if not (isinstance(model_class, type) and issubclass(model_class, TIReIDPreTrainedModel)):
        raise TypeError(f"register_method({name!r}): model_class must subclass TIReIDPreTrainedModel, got {model_class!r}")
    if config_class.model_type != f"tireid-{name}":
        raise ValueError(f"register_method({name!r}): {config_class.__name__}.model_type must be 'tireid-{name}', "
                         f"got {config_class.model_type!r}")
    if model_class.config_class is not config_class:
        raise ValueError(f"register_method({name!r}): {model_class.__name__}.config_class must be {config_class.__name__}")
    if model_class.compute_losses is TIReIDPreTrainedModel.compute_losses:
        raise ValueError(f"register_method({name!r}): {model_class.__name__} must implement compute_losses")
    if name in METHODS and METHODS[name] != (config_class, model_class):
        raise ValueError(f"register_method({name!r}): another method of that name is registered: {METHODS[name]}")
    path = Path(card_section) if card_section is not None else CARD_SECTIONS / f"{name}.md"
    if not path.is_file():
        raise FileNotFoundError(f"register_method({name!r}): the model-card section {path} is missing")
    METHODS[name] = (config_class, model_class)
    if card_section is not None:
        _card_sections[name] = path
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModel.register(config_class, model_class, exist_ok=True)
    AutoProcessor.register(config_class, TIReIDProcessor, exist_ok=True)


def unregister_method(name: str) -> None:
    """Removes a method added by :func:`register_method` from the registry (its Auto classes stay
    registered: `transformers` has no way to remove them, and they harm nothing)."""
    method_classes(name)
    del METHODS[name]
    _card_sections.pop(name, None)


for _name, (_config_class, _model_class) in list(METHODS.items()):
    register_method(_name, _config_class, _model_class)
