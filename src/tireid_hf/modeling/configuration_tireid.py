"""`TIReIDConfig`: the fields every TIReID method's config shares. Remote code.

Method configs subclass it (``configuration_<method>.py``) and add their own fields; loss weights
are fields named ``<loss name>_loss_weight``.
"""

from __future__ import annotations

from typing import ClassVar

from transformers import CLIPConfig, PreTrainedConfig
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
      that switch the component off (e.g. ``{"no triplet": {"triplet_loss_weight": 0.0}}``).
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
    def from_dict(cls, config_dict, **kwargs):
        """Refuses the config of another method instead of silently building the wrong model."""
        found = config_dict.get("model_type")
        if cls.model_type != TIReIDConfig.model_type and found is not None and found != cls.model_type:
            raise ValueError(
                f"This checkpoint's config.json has model_type={found!r}, but {cls.__name__} expects "
                f"{cls.model_type!r}: load it with AutoModel.from_pretrained or the matching model class."
            )
        return super().from_dict(config_dict, **kwargs)
