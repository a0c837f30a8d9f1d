"""The shared CLIP base of every TIReID method.

Every method of the zoo is ``XConfig(TIReIDConfig)`` + ``XModel(TIReIDPreTrainedModel)``. This file
holds what they all share: the config fields, the CLIP backbone with a RECTANGULAR position table
(24 x 8 patches for 384 x 128 images at patch 16), the encoders returning global and token
features, the retrieval API (``get_image_features`` / ``get_text_features``), the output dataclass,
``from_clip`` and ``export_for_inference``.

This file is remote code: it imports only torch, transformers and siblings of this folder.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPConfig, CLIPModel, PreTrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.configuration_utils import SubConfigSpec
from transformers.modeling_outputs import ModelOutput
from transformers.models.clip.modeling_clip import CLIPVisionEmbeddings

from .layers import IdentityClassifier, MultiHeadAttention
from .losses import id_loss, sdm_loss

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


@dataclass
class TIReIDOutput(ModelOutput):
    """Output of every TIReID model's ``forward``.

    Args:
        loss: scalar, ``sum_k weight_k * losses[k]`` (None when no ``pids`` are given).
        losses: one UNWEIGHTED scalar per loss term, by name (weights are the config's).
        image_embeds: [N, D] L2-normalised retrieval embeddings of the images (inference path).
        text_embeds: [N, D] L2-normalised retrieval embeddings of the texts (inference path).
        logits_per_text: [N, N] ``text_embeds @ image_embeds^T / tau``.
    """

    loss: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] | None = None
    image_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    logits_per_text: torch.Tensor | None = None


@dataclass
class EncoderOutput(ModelOutput):
    """Projected features of one modality.

    Args:
        global_features: [N, D] the class-token (image) or end-of-text-token (text) feature, not normalised.
        token_features: [N, L, D] every token, projected to the joint width (None unless requested).
            Images: L = 1 + rows * cols, the class token first. Texts: L = text length.
        attention_mask: [N, L] for texts (1 = real token), None for images.
    """

    global_features: torch.Tensor | None = None
    token_features: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None


class RectangularVisionEmbeddings(CLIPVisionEmbeddings):
    """CLIP patch + position embeddings for a (rows x cols) patch grid.

    The position table holds ``1 + rows * cols`` entries and is used as it is: it is resized ONCE from
    a square pretrained table (:func:`resize_position_table`) when a model is built from CLIP weights,
    never interpolated per forward.
    """

    def __init__(self, vision_config, image_size: tuple[int, int]):
        super().__init__(vision_config)
        self.image_size = tuple(image_size)
        self.grid_size = (image_size[0] // self.patch_size, image_size[1] // self.patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.num_positions = self.num_patches + 1
        self.position_embedding = nn.Embedding(self.num_positions, self.embed_dim)
        self.position_ids = nn.Buffer(torch.arange(self.num_positions).expand((1, -1)), persistent=False)

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        """[N, 3, H, W] -> [N, 1 + rows * cols, width]."""
        if interpolate_pos_encoding:
            raise ValueError("TIReID models use a fixed rectangular position table; interpolate_pos_encoding is not supported")
        expected = (self.config.num_channels, *self.image_size)
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != expected:
            raise ValueError(
                f"pixel_values must have shape [batch, {expected[0]}, {expected[1]}, {expected[2]}] "
                f"(config.image_size={self.image_size}), got {list(pixel_values.shape)}"
            )
        patches = self.patch_embedding(pixel_values.to(dtype=self.patch_embedding.weight.dtype))
        patches = patches.flatten(2).transpose(1, 2)
        class_token = self.class_embedding.expand(pixel_values.shape[0], 1, -1)
        return torch.cat([class_token, patches], dim=1) + self.position_embedding(self.position_ids)


def resize_position_table(table: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
    """Resize a CLIP position table [1 + S*S, C] to [1 + rows*cols, C].

    The class-token row is kept; the S x S grid is resized bilinearly (align_corners=False, as the
    IRRA reference code does) to ``grid_size``.
    """
    class_row, grid = table[:1], table[1:]
    side = math.isqrt(grid.shape[0])
    if side * side != grid.shape[0]:
        raise ValueError(f"expected a square position grid, got {grid.shape[0]} positions")
    if (side, side) == tuple(grid_size):
        return table.clone()
    grid = grid.reshape(1, side, side, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=tuple(grid_size), mode="bilinear", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(grid_size[0] * grid_size[1], -1).to(table.dtype)
    return torch.cat([class_row, grid], dim=0)


class TIReIDPreTrainedModel(PreTrainedModel):
    """CLIP backbone + the retrieval API shared by every method.

    Subclasses build their heads in ``__init__`` (after ``super().__init__``), end it with
    ``self.post_init()``, and implement ``forward``. Training-only submodules are built only when
    ``not config.inference_only``; retrieval never runs them.
    """

    config_class = TIReIDConfig
    base_model_prefix = "tireid"
    # Named text transforms the training collator applies for this method (parameters in the config):
    # "key_word_augmentation" (UIT) and "attribute_masking" (CADA). See tireid_hf.processing.
    text_transforms: tuple[str, ...] = ()
    # Name prefixes (as in named_parameters) of the new modules trained at learning_rate x
    # head_learning_rate_multiplier; None: every module outside the CLIP backbone. A method names
    # them where its reference code boosts only some (SEN/IRRA: the cross-modal modules and the
    # classifier; LGUR: the part projections and classifiers). See tireid_hf.training.optim.
    head_multiplier_prefixes: tuple[str, ...] | None = None
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config: TIReIDConfig):
        super().__init__(config)
        if type(config).model_type != type(self).config_class.model_type:
            raise ValueError(
                f"{type(self).__name__} needs a {type(self).config_class.__name__} "
                f"(model_type={type(self).config_class.model_type!r}), got model_type={type(config).model_type!r}"
            )
        self.clip = CLIPModel(config.clip_config)
        self.clip.logit_scale.requires_grad_(False)  # unused: the temperature is this config's
        self.clip.vision_model.embeddings = RectangularVisionEmbeddings(
            config.clip_config.vision_config, config.image_size
        )
        log_scale = torch.tensor(math.log(1.0 / config.temperature))
        if config.learn_temperature:
            self.log_logit_scale = nn.Parameter(log_scale)
        else:
            self.log_logit_scale = nn.Buffer(log_scale, persistent=False)

    # ----------------------------------------------------------------------------- weights
    @torch.no_grad()
    def _init_weights(self, module):
        """Weights of the heads: ID classifiers N(0, 0.001), other linear layers N(0, 0.02), zero
        biases, attention input projections Xavier-uniform (as ``nn.MultiheadAttention``), LayerNorm (1, 0). The CLIP
        backbone is initialised by CLIP's own ``_init_weights``."""
        if isinstance(module, IdentityClassifier):
            init.normal_(module.weight, mean=0.0, std=0.001)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, MultiHeadAttention):  # as nn.MultiheadAttention; its out_proj is a Linear
            init.xavier_uniform_(module.in_proj_weight)
            init.zeros_(module.in_proj_bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=0.02)
        elif module is self:
            init.constant_(self.log_logit_scale, math.log(1.0 / self.config.temperature))

    @classmethod
    def from_clip(cls, clip_name_or_path: str = "openai/clip-vit-base-patch16", **config_overrides):
        """A fresh method model around pretrained CLIP weights.

        The square position table of the checkpoint is resized once to the rectangular grid of
        ``image_size``; every head starts from its own initialisation.

        Args:
            clip_name_or_path: a `transformers` CLIP checkpoint (Hub id or local folder).
            **config_overrides: fields of the method's config (e.g. ``num_ids=11003``).
        """
        clip = CLIPModel.from_pretrained(clip_name_or_path)
        config = cls.config_class(clip_config=clip.config.to_dict(), **config_overrides)
        model = cls(config)
        state = clip.state_dict()
        table_key = "vision_model.embeddings.position_embedding.weight"
        state[table_key] = resize_position_table(state[table_key], config.grid_size)
        model.clip.load_state_dict(state, strict=True)
        model.config.name_or_path = str(clip_name_or_path)
        return model

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """``PreTrainedModel.from_pretrained`` that refuses weights which do not fit the model.

        Missing, unexpected or shape-mismatched tensors raise a ``ValueError`` naming them, instead of a
        silently re-initialised layer (``ignore_mismatched_sizes=True`` allows re-initialising
        mismatched ones, as in `transformers`).
        """
        return_info = kwargs.pop("output_loading_info", False)
        allow_mismatch = kwargs.pop("ignore_mismatched_sizes", False)
        model, info = super().from_pretrained(
            *args, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs
        )
        checked = ("missing_keys", "unexpected_keys") + (() if allow_mismatch else ("mismatched_keys",))
        problems = {key: info.get(key) for key in checked}
        problems = {key: sorted(map(str, value)) for key, value in problems.items() if value}
        if problems:
            details = "; ".join(f"{key}: {', '.join(value[:8])}" + (" ..." if len(value) > 8 else "")
                                for key, value in problems.items())
            raise ValueError(f"The checkpoint's weights do not match {cls.__name__}: {details}")
        return (model, info) if return_info else model

    def export_for_inference(self) -> "TIReIDPreTrainedModel":
        """A copy holding only what retrieval needs (``config.inference_only=True``).

        Its ``get_image_features``/``get_text_features`` are identical to this model's.
        """
        config = copy.deepcopy(self.config)
        config.inference_only = True
        exported = type(self)(config)
        kept = exported.state_dict()
        exported.load_state_dict({key: value for key, value in self.state_dict().items() if key in kept}, strict=True)
        return exported.to(self.device).eval()

    def training_stages(self) -> tuple[str, ...]:
        """Names of the stages the training loop runs in sequence (a fresh optimizer and schedule
        each), calling :meth:`start_stage` before each. One stage unless a method overrides it
        (LCR2S: teacher, then student)."""
        return ("main",)

    def start_stage(self, stage: str) -> None:
        """Prepare the model for ``stage`` (freeze, copy, switch losses). The single-stage default
        has nothing to prepare; it only checks the name."""
        if stage not in self.training_stages():
            raise ValueError(f"{type(self).__name__} has training stages {self.training_stages()}, got {stage!r}")

    # ----------------------------------------------------------------------------- encoders
    @property
    def logit_scale(self) -> torch.Tensor:
        """``1 / tau``, a scalar."""
        return self.log_logit_scale.exp()

    def encode_image(
        self, pixel_values: torch.Tensor, return_tokens: bool = False, keep_patches: torch.Tensor | None = None
    ) -> EncoderOutput:
        """Image encoder: [N, 3, H, W] -> global [N, D] (+ tokens [N, 1 + P, D]).

        CLIP's final LayerNorm and projection are applied to every token (as IRRA does), so token
        features live in the joint space; the global feature is the class token.

        Args:
            keep_patches: optional [N, M] patch indices in ``[0, rows*cols)``: only those patches
                (after their position embeddings are added) and the class token enter the encoder,
                MAE-style; then P = M, in that order. None keeps all, P = rows * cols.
        """
        vision = self.clip.vision_model
        embeddings = vision.embeddings(pixel_values)
        if keep_patches is not None:
            if keep_patches.dim() != 2 or keep_patches.shape[0] != embeddings.shape[0]:
                raise ValueError(f"keep_patches must be [batch={embeddings.shape[0]}, M], got {list(keep_patches.shape)}")
            index = (keep_patches + 1).unsqueeze(-1).expand(-1, -1, embeddings.shape[-1])
            embeddings = torch.cat([embeddings[:, :1], embeddings.gather(1, index)], dim=1)
        hidden = vision.pre_layrnorm(embeddings)
        hidden = vision.encoder(inputs_embeds=hidden).last_hidden_state
        if not return_tokens:
            return EncoderOutput(global_features=self.clip.visual_projection(vision.post_layernorm(hidden[:, 0])))
        tokens = self.clip.visual_projection(vision.post_layernorm(hidden))
        return EncoderOutput(global_features=tokens[:, 0], token_features=tokens)

    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, return_tokens: bool = False
    ) -> EncoderOutput:
        """Text encoder: [N, L] token ids -> global [N, D] (+ tokens [N, L, D]).

        The global feature is the end-of-text token (CLIP's pooling). L must not exceed the text
        model's ``max_position_embeddings`` (77): the processor truncates longer captions.
        """
        max_length = self.config.clip_config.text_config.max_position_embeddings
        if input_ids.dim() != 2 or input_ids.shape[1] > max_length:
            raise ValueError(
                f"input_ids must have shape [batch, length <= {max_length}], got {list(input_ids.shape)}; "
                "tokenise with the processor (it truncates to the model's text length)"
            )
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask shape {list(attention_mask.shape)} does not match input_ids {list(input_ids.shape)}"
            )
        outputs = self.clip.text_model(input_ids=input_ids, attention_mask=attention_mask)
        global_features = self.clip.text_projection(outputs.pooler_output)
        if not return_tokens:
            return EncoderOutput(global_features=global_features)
        tokens = self.clip.text_projection(outputs.last_hidden_state)
        return EncoderOutput(global_features=global_features, token_features=tokens, attention_mask=attention_mask)

    # ----------------------------------------------------------------------------- retrieval API
    def image_retrieval_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The method's inference-path image embedding, before normalisation. Default: CLIP's global feature."""
        return self.encode_image(pixel_values).global_features

    def text_retrieval_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """The method's inference-path text embedding, before normalisation. Default: CLIP's global feature."""
        return self.encode_text(input_ids, attention_mask).global_features

    def get_image_features(self, pixel_values: torch.Tensor, **kwargs) -> torch.Tensor:
        """L2-normalised retrieval embeddings of images: [N, 3, H, W] -> [N, config.embed_dim]."""
        return F.normalize(self.image_retrieval_features(pixel_values), dim=-1)

    def get_text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        """L2-normalised retrieval embeddings of texts: [N, L] -> [N, config.embed_dim]."""
        return F.normalize(self.text_retrieval_features(input_ids, attention_mask), dim=-1)

    # ----------------------------------------------------------------------------- losses
    def embed_pair(self, image_features: torch.Tensor, text_features: torch.Tensor):
        """L2-normalise [N, D] image and text features; returns ``(image_embeds, text_embeds,
        logits_per_text)`` with ``logits_per_text = text_embeds @ image_embeds^T / tau`` [N, N]."""
        image_embeds, text_embeds = F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1)
        return image_embeds, text_embeds, self.logit_scale * text_embeds @ image_embeds.t()

    def alignment_losses(
        self, image_features: torch.Tensor, text_features: torch.Tensor, logits_per_text: torch.Tensor,
        pids: torch.Tensor, classifier: IdentityClassifier | None, align_name: str = "sdm", id_name: str = "id",
    ) -> dict[str, torch.Tensor]:
        """IRRA's pair of terms, each only when switched on: ``align_name`` = :func:`~.losses.sdm_loss`
        of ``logits_per_text`` [N, N], ``id_name`` = the shared-classifier ID loss of the
        un-normalised features [N, D] (:meth:`identity_loss`)."""
        losses = {}
        if self.wants_loss(align_name):
            losses[align_name] = sdm_loss(logits_per_text, pids)
        if self.wants_loss(id_name):
            losses[id_name] = self.identity_loss(classifier, image_features, text_features, pids, id_name)
        return losses

    def combine_losses(self, losses: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """``sum_k config.loss_weight(k) * losses[k]``; None when there is no term."""
        if not losses:
            return None
        return sum(self.config.loss_weight(name) * value for name, value in losses.items())

    def build_id_classifier(self, in_features: int, loss_name: str = "id") -> IdentityClassifier | None:
        """The shared ID classifier of loss ``loss_name``: None when that loss is off or ``num_ids`` is 0
        (a model built only to embed needs no identity count)."""
        if not self.wants_loss(loss_name) or self.config.num_ids == 0:
            return None
        return IdentityClassifier(in_features, self.config.num_ids)

    def identity_loss(
        self, classifier: IdentityClassifier | None, image_features: torch.Tensor, text_features: torch.Tensor,
        pids: torch.Tensor, loss_name: str = "id",
    ) -> torch.Tensor:
        """:func:`~.losses.id_loss` of both modalities through ``classifier`` (built by
        :meth:`build_id_classifier`); refuses to silently skip a switched-on ID loss."""
        if classifier is None:
            raise ValueError(
                f"{loss_name}: the ID loss is on ({loss_name}_loss_weight={self.config.loss_weight(loss_name)}) but "
                "config.num_ids is 0; set num_ids to the number of training identities or the weight to 0"
            )
        if pids.min() < 0 or pids.max() >= self.config.num_ids:
            raise ValueError(f"{loss_name}: pids must lie in [0, num_ids={self.config.num_ids}), got [{pids.min()}, {pids.max()}]")
        return id_loss(classifier(image_features), classifier(text_features), pids)

    def wants_loss(self, name: str) -> bool:
        """Whether loss term ``name`` is computed: training model and a non-zero weight."""
        return not self.config.inference_only and self.config.loss_weight(name) != 0

