"""`TIReIDConfig`: the fields every TIReID method's config shares. Remote code.

Method configs subclass it (``configuration_<method>.py``) and add their own fields; loss weights
are fields named ``<loss name>_loss_weight``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import ClassVar

import torch
from transformers import CLIPConfig, CLIPTextConfig, CLIPVisionConfig, PreTrainedConfig
from transformers.activations import ACT2FN
from transformers.configuration_utils import SubConfigSpec

from .pipeline_tireid import custom_pipelines

# CLIP ViT-B/16 (openai/clip-vit-base-patch16); CLIPConfig's own default is the patch-32 model.
DEFAULT_CLIP_ARCHITECTURE = {"vision_config": {"patch_size": 16}}
# How attribute words are masked for masked attribute prediction: each word alone, or adjective+noun
# chunks together (`tireid_hf.processing.mask_attribute_tokens`'s ``unit``, CADA's ``attribute_mask_unit``).
ATTRIBUTE_MASK_UNITS = ("word", "phrase")
# The mask token of the IRRA family of CLIP ReID code: its tokenizer keeps one merge fewer than CLIP
# and puts "<|mask|>" at 49405. Our tokenizer keeps that last (very rare) merge, so masking replaces
# tokens by 49405 the same way; no vocabulary change to the pretrained CLIP text encoder is needed.
CLIP_MASK_TOKEN_ID = 49405

# The (inclusive) ranges that a config.json's CLIP sizes must lie in: far above any CLIP released, low
# enough that a model built from them fits in memory.
CLIP_SIZE_RANGES = {
    "hidden_size": (1, 16384), "intermediate_size": (1, 65536), "num_attention_heads": (1, 256),
    "num_hidden_layers": (1, 256), "projection_dim": (1, 16384), "vocab_size": (1, 1_000_000),
    "max_position_embeddings": (1, 65536), "image_size": (1, 8192), "patch_size": (1, 8192), "num_channels": (1, 16),
}
# The range of every whole-number field of a TIReID config (head sizes, depths, counts), and of num_ids.
MAX_CONFIG_INT = 65536
MAX_NUM_IDS = 2**21
# The most parameters a config.json may describe (CLIP text + vision towers, position tables, ID classifier).
MAX_PARAMETERS = 4_000_000_000


class TIReIDConfig(PreTrainedConfig):
    r"""Fields shared by every TIReID method. Method configs subclass it and add their own.

    Args:
        clip_config (`CLIPConfig` or `dict`, *optional*):
            The CLIP backbone. Defaults to the ViT-B/16 architecture (random weights); use
            ``XModel.from_clip(...)`` to start from pretrained CLIP weights.
        image_size (`tuple[int, int]`, *optional*, defaults to `(384, 128)`):
            Input (height, width). Both must be multiples of the patch size; the position table is
            ``(height / patch) x (width / patch)`` plus the class token.
        temperature (`float`, *optional*, defaults to 0.02):
            Similarity temperature ``tau``: logits are ``cos / tau`` (a logit scale of 50).
        learn_temperature (`bool`, *optional*, defaults to `False`):
            Learn ``log(1 / tau)`` as a parameter (initialised from ``temperature``) instead of
            keeping it fixed.
        num_ids (`int`, *optional*, defaults to 0):
            Number of training identities for the ID classifiers; 0 builds no classifier.
        inference_only (`bool`, *optional*, defaults to `False`):
            Build only what retrieval needs (no teachers, decoders, classifiers). Set by
            ``export_for_inference()``; such a model computes embeddings but no losses.

    Every config also carries ``custom_pipelines``, naming the ``"text-to-image-retrieval"`` pipeline
    (``pipeline_tireid.py``, which saving copies beside ``config.json`` with this file).

    Loss weights are fields named ``<loss name>_loss_weight``; a weight of 0 switches the term off.

    The zoo's facts about a method are class attributes of its config (not fields: ``config.json``
    does not hold them), read by ``benchmarks/zoo.py``, ``benchmarks/report.py`` and the model cards;
    ``tests/test_method_registry.py`` checks that every registered method declares them:

    * ``zoo_ablations`` (`dict[str, dict]`): one row per component, its label -> the field overrides
      that switch the component off (e.g. ``{"no triplet": {"triplet_loss_weight": 0.0}}``). The row
      ``"none of its additions"`` switches off every loss and module the method adds, leaving the
      baseline's training on the method's embedding. A row whose overrides hold ``"method"`` trains
      that method's config instead (the remaining overrides applied to it), e.g. the method's losses
      on the baseline's embedding.
    * ``zoo_contribution`` (`str`): the label of the ``zoo_ablations`` row that removes the paper's own
      contribution ("" for the baseline).
    * ``zoo_sweep`` (`tuple[str, ...]`): the loss-weight fields of the method's main auxiliary loss,
      set together by the zoo's tuning sweep to their default (the paper's value, the same for all of
      them) and to half of it.
    * ``zoo_reported`` (`dict[str, str]`): what the seed paper (or a third-party retrain) reports:
      ``"backbone"`` (the reported model's backbone) and, per real benchmark it reports
      (``"cuhk-pedes"``, ``"icfg-pedes"``, ``"rstpreid"``), ``"R@1 / mAP"`` (``"—"`` for a figure not
      reported). Not reproduced here; the sources and caveats are in the method's model-card section.

    Example:

    ```python
    >>> from transformers import CLIPConfig
    >>> from tireid_hf.modeling import ClipReIDConfig, ClipReIDModel
    >>> config = ClipReIDConfig(num_ids=100)  # ViT-B/16 shapes, random weights
    >>> model = ClipReIDModel(config)
    ```
    """

    model_type = "tireid"
    sub_configs_defaults = {"clip_config": SubConfigSpec(CLIPConfig, init_kwargs=DEFAULT_CLIP_ARCHITECTURE)}
    zoo_ablations: ClassVar[dict[str, dict]] = {}
    zoo_sweep: ClassVar[tuple[str, ...]] = ()
    zoo_contribution: ClassVar[str] = ""
    zoo_reported: ClassVar[dict[str, str]] = {}

    clip_config: dict | CLIPConfig | None = None
    image_size: list[int] | tuple[int, int] = (384, 128)
    temperature: float = 0.02
    learn_temperature: bool = False
    num_ids: int = 0
    inference_only: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.custom_pipelines = custom_pipelines()
        self.image_size = tuple(int(side) for side in self.image_size)
        patch = self.clip_config.vision_config.patch_size
        if len(self.image_size) != 2 or any(side <= 0 or side % patch for side in self.image_size):
            raise ValueError(
                f"image_size must be (height, width), both positive multiples of the patch size {patch}; "
                f"got {self.image_size}"
            )
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.num_ids < 0:
            raise ValueError(f"num_ids must be >= 0, got {self.num_ids}")

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch grid (rows, columns) of ``image_size``."""
        patch = self.clip_config.vision_config.patch_size
        return self.image_size[0] // patch, self.image_size[1] // patch

    @property
    def embed_dim(self) -> int:
        """Width of the retrieval embeddings returned by ``get_image_features``/``get_text_features``."""
        return self.clip_config.projection_dim

    def loss_weight(self, name: str) -> float:
        """Weight of loss term ``name`` (the field ``<name>_loss_weight``)."""
        return float(getattr(self, f"{name}_loss_weight"))

    @classmethod
    def check_config_dict(cls, config_dict: dict) -> None:
        """Checks the fields of a ``config.json`` of this class before anything is built from it.

        Every field of the config, of ``clip_config`` and of its ``text_config`` / ``vision_config`` must
        have its declared type (whole numbers for ``int``, finite numbers for ``float``, ...); the CLIP
        sizes lie in :data:`CLIP_SIZE_RANGES` (``hidden_size`` a multiple of ``num_attention_heads``, token
        ids inside the vocabulary, ``hidden_act`` an activation transformers knows), every other whole-number field in [-1, :data:`MAX_CONFIG_INT`]
        (``num_ids`` up to :data:`MAX_NUM_IDS`), ``image_size`` two multiples of the patch size, and the
        model they describe holds at most :data:`MAX_PARAMETERS` parameters. Raises ``ValueError`` naming
        the field (dotted: ``clip_config.text_config.hidden_size``) and the values allowed.
        """
        if not isinstance(config_dict, dict):
            raise ValueError(f"a config must be a JSON object, got {type(config_dict).__name__}")
        _check_types(cls, config_dict, "")
        for name, value in config_dict.items():
            if type(value) is int and name not in PreTrainedConfig.__dataclass_fields__:
                high = MAX_NUM_IDS if name == "num_ids" else MAX_CONFIG_INT
                if not 0 <= value <= high:
                    raise ValueError(f"{name} must lie in [0, {high}], got {value}")
        clip = config_dict.get("clip_config") or {}
        if isinstance(clip, PreTrainedConfig):  # already built (and checked) by CLIPConfig
            return
        _check_types(CLIPConfig, clip, "clip_config.")
        towers, fields_of = {}, {}
        for tower, tower_class in (("text_config", CLIPTextConfig), ("vision_config", CLIPVisionConfig)):
            fields = clip.get(tower) or {}
            if isinstance(fields, PreTrainedConfig):
                fields = fields.to_dict()
            where = f"clip_config.{tower}."
            _check_types(tower_class, fields, where)
            values = {name: fields.get(name, getattr(tower_class, name)) for name in CLIP_SIZE_RANGES if hasattr(tower_class, name)}
            values["projection_dim"] = clip.get("projection_dim", CLIPConfig.projection_dim)
            for name, value in values.items():
                low, high = CLIP_SIZE_RANGES[name]
                if type(value) is not int or not low <= value <= high:
                    raise ValueError(f"{where}{name} must be a whole number in [{low}, {high}], got {value}")
            if fields.get("hidden_act", "quick_gelu") not in ACT2FN:
                raise ValueError(f"{where}hidden_act must be one of {sorted(ACT2FN)}, got {fields['hidden_act']!r}")
            if values["hidden_size"] % values["num_attention_heads"]:
                raise ValueError(f"{where}hidden_size ({values['hidden_size']}) must be a multiple of num_attention_heads "
                                 f"({values['num_attention_heads']})")
            towers[tower], fields_of[tower] = values, fields
        text, vision = towers["text_config"], towers["vision_config"]
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = fields_of["text_config"].get(name)
            if type(value) is int and not 0 <= value < text["vocab_size"]:
                raise ValueError(f"clip_config.text_config.{name} must lie in [0, vocab_size={text['vocab_size']}), got {value}")
        patch, image_size = vision["patch_size"], list(config_dict.get("image_size", cls.image_size))
        if (patch > vision["image_size"] or len(image_size) != 2
                or not all(patch <= side <= 8192 and side % patch == 0 for side in image_size)):
            raise ValueError(f"image_size must be [height, width], both multiples of clip_config.vision_config.patch_size "
                             f"{patch} in [{patch}, 8192] (and patch_size <= the vision image_size), got {image_size}")
        height, width = image_size

        def blocks(sizes):  # attention (4 h^2) and MLP (2 h i) weights of every layer
            return sizes["num_hidden_layers"] * (4 * sizes["hidden_size"] ** 2 + 2 * sizes["hidden_size"] * sizes["intermediate_size"])

        positions = (vision["image_size"] // patch) ** 2 + (height // patch) * (width // patch) + 2
        parameters = (blocks(text) + blocks(vision)
                      + (text["vocab_size"] + text["max_position_embeddings"]) * text["hidden_size"]
                      + (positions + vision["num_channels"] * patch**2) * vision["hidden_size"]
                      + (text["hidden_size"] + vision["hidden_size"] + config_dict.get("num_ids", 0)) * text["projection_dim"])
        if parameters > MAX_PARAMETERS:
            raise ValueError(f"clip_config describes a model of about {parameters:,} parameters, more than the "
                             f"{MAX_PARAMETERS:,} allowed (check hidden_size, intermediate_size, num_hidden_layers, "
                             f"vocab_size, image_size and num_ids)")

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        """Refuses the config of another method instead of silently building the wrong model, and a
        config whose fields fail :meth:`check_config_dict`."""
        cls.check_config_dict(config_dict)
        found = config_dict.get("model_type")
        if cls.model_type != TIReIDConfig.model_type and found is not None and found != cls.model_type:
            raise ValueError(
                f"This checkpoint's config.json has model_type={found!r}, but {cls.__name__} expects "
                f"{cls.model_type!r}: load it with AutoModel.from_pretrained or the matching model class."
            )
        return super().from_dict(config_dict, **kwargs)


def _check_types(config_class: type, fields: dict, where: str) -> None:
    """``ValueError`` naming the first field of ``fields`` whose value is not of the type ``config_class``
    declares for it (fields it does not declare are not checked)."""
    if not isinstance(fields, dict):
        raise ValueError(f"{where.rstrip('.')} must be a JSON object, got {type(fields).__name__}")
    hints = typing.get_type_hints(config_class, localns={"torch": torch})
    for field in dataclasses.fields(config_class):
        if field.name in fields and not _accepts(hints[field.name], fields[field.name]):
            raise ValueError(f"{where}{field.name} must be {_describe(hints[field.name])}, got {fields[field.name]!r}")


def _accepts(annotation, value) -> bool:
    """Whether the JSON ``value`` fits the type ``annotation`` (one it cannot judge is accepted)."""
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(argument, value) for argument in arguments)
    if origin is typing.Literal:
        return value in arguments
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return type(value) is int
    if annotation is float:
        return (type(value) is float and math.isfinite(value)) or (type(value) is int and abs(value) <= 2**53)
    if annotation is str:
        return isinstance(value, str)
    if origin is tuple and arguments and Ellipsis not in arguments:
        return isinstance(value, (list, tuple)) and len(value) == len(arguments) and all(map(_accepts, arguments, value))
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)) and all(_accepts(arguments[0], item) for item in value) \
            if arguments else isinstance(value, (list, tuple))
    if isinstance(annotation, type) and issubclass(annotation, PreTrainedConfig):
        return isinstance(value, (dict, annotation))
    if annotation is dict or origin is dict:
        return isinstance(value, dict)
    return True


def _describe(annotation, plural: bool = False) -> str:
    """``annotation`` in words: ``int | None`` -> "a whole number or null" (``plural``: "whole numbers")."""
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe(argument, plural) for argument in arguments))
    if origin is typing.Literal:
        return f"one of {list(arguments)}"
    names = {type(None): ("null", "nulls"), bool: ("true or false", "booleans"), int: ("a whole number", "whole numbers"),
             float: ("a finite number", "finite numbers"), str: ("a string", "strings")}
    if origin in (list, tuple):
        count = f"{len(arguments)} " if origin is tuple and Ellipsis not in arguments else ""
        return f"a list of {count}{_describe(arguments[0], plural=True) if arguments else 'values'}"
    if annotation in names:
        return names[annotation][plural]
    return "JSON objects" if plural else "a JSON object"
