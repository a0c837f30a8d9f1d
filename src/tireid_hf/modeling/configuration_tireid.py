"""`TIReIDConfig`: the fields every TIReID method's config shares. Remote code.

Method configs subclass it (``configuration_<method>.py``) and add their own fields; loss weights
are fields named ``<loss name>_loss_weight``.
"""

from __future__ import annotations

from transformers import CLIPConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .pipeline_tireid import custom_pipelines

# CLIP ViT-B/16 (openai/clip-vit-base-patch16); CLIPConfig's own default is the patch-32 model.
DEFAULT_CLIP_ARCHITECTURE = {"vision_config": {"patch_size": 16}}


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
