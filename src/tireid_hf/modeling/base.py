"""The shared CLIP base of every TIReID method (``XModel(TIReIDPreTrainedModel)``): the CLIP backbone
with a rectangular position table, the encoders, the retrieval API, the training ``forward`` and the
capabilities a method declares. Remote code: imports only torch, transformers and siblings.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling, ModelOutput
from transformers.models.clip.modeling_clip import CLIPVisionEmbeddings

from .configuration_tireid import TIReIDConfig
from .layers import IdentityClassifier, MultiHeadAttention
from .losses import id_loss, sdm_loss


@dataclass
class TIReIDOutput(ModelOutput):
    """Output of every TIReID model's ``forward``.

    Args:
        loss: scalar, ``sum_k weight_k * losses[k]`` (None when no ``pids`` are given).
        losses: one UNWEIGHTED scalar per loss term, by name (weights are the config's).
        image_embeds: [N, D] L2-normalised retrieval embeddings of the images (inference path).
        text_embeds: [N, D] L2-normalised retrieval embeddings of the texts (inference path).
        logits_per_text: [N, N] ``text_embeds @ image_embeds^T / tau``.
        text_model_output / vision_model_output: the CLIP text / vision tower's ``BaseModelOutputWithPooling``
            over the batch (``last_hidden_state`` [N, L, width], ``pooler_output`` [N, width], ``hidden_states``:
            1 + layers tensors, ``attentions``: one [N, heads, L, L] per layer, each only when asked), as
            ``CLIPOutput`` holds them; None unless ``output_hidden_states`` or ``output_attentions``.

    ``to_tuple()`` (what ``return_dict=False`` returns) holds the fields that are not None in this order,
    the tower outputs as tuples themselves, as ``CLIPOutput.to_tuple`` does.
    """

    loss: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] | None = None
    image_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    logits_per_text: torch.Tensor | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None

    def to_tuple(self) -> tuple:
        return tuple(value.to_tuple() if isinstance(value, ModelOutput) else value for value in self.values())


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


@dataclass
class PairFeatures:
    """What the encoding step of ``forward`` hands to the method's loss hook.

    Args:
        image_features / text_features: [N, D] the un-normalised inference-path embeddings (what
            ``image_retrieval_features`` / ``text_retrieval_features`` return).
        image / text: the encoders' outputs, when the method kept them (token features for its heads).
        intermediates: anything else the method computed while encoding and its losses reuse.
        image_embeds / text_embeds / logits_per_text: filled by ``forward`` (:meth:`TIReIDPreTrainedModel.embed_pair`).
    """

    image_features: torch.Tensor
    text_features: torch.Tensor
    image: EncoderOutput | None = None
    text: EncoderOutput | None = None
    intermediates: dict = field(default_factory=dict)
    image_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    logits_per_text: torch.Tensor | None = None


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
    """CLIP backbone + the retrieval API + the training forward shared by every method.

    The contract of a method (``XModel(TIReIDPreTrainedModel)``):

    * ``__init__``: build the heads after ``super().__init__``, end with ``self.post_init()``; build
      training-only submodules only when ``not config.inference_only`` (retrieval never runs them).
    * ``compute_losses`` (required): the loss terms of a batch, by name (see :meth:`forward`).
    * optional: ``image_retrieval_features`` / ``text_retrieval_features`` (the inference path, CLIP's
      global features by default), ``encode_batch`` (what ``forward`` encodes once for the losses),
      ``training_stages`` / ``start_stage``, and the capabilities below, each declared here with its
      default: ``text_transforms``, ``backbone_modules`` / ``head_multiplier_modules`` (learning-rate
      roles), ``has_rerank_stage`` / ``can_rerank`` / ``rerank_k`` / ``rerank_scores`` (second retrieval
      stage), ``can_restore_images`` / ``restore_image`` (pictures of an image restoration task).
    """

    config_class = TIReIDConfig
    base_model_prefix = "tireid"
    # Whether the method has a second retrieval stage (``rerank_scores``); an instance may still lack it
    # (``can_rerank``). Shown in the method's model cards.
    has_rerank_stage: bool = False
    # Names in tireid_hf.processing.text_transforms that the training collator applies for this method
    # (parameters in the config); the batch inputs they add reach compute_losses.
    text_transforms: tuple[str, ...] = ()
    # Learning-rate roles (learning_rate_roles, used by tireid_hf.training.optim), by submodule (dotted
    # attribute paths), never by parameter-name prefix. The pretrained backbone(s), at learning_rate:
    backbone_modules: tuple[str, ...] = ("clip",)
    # The new modules trained at learning_rate x head_learning_rate_multiplier; None: every module
    # outside the backbones (UIT and LGUR name some, as their reference code).
    head_multiplier_modules: tuple[str, ...] | None = None
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = True
    # The attention backends of the CLIP backbone (the heads' own attention layers are plain torch).
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

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
        backbone is initialised by CLIP's own ``_init_weights`` (`transformers` dispatches its modules to it),
        except ``logit_scale``, which CLIP sets only when it is built: ``config.logit_scale_init_value`` here."""
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
        for clip in (getattr(module, "clip", None), getattr(module, "teacher_clip", None)):
            if isinstance(clip, CLIPModel):  # set in CLIPModel.__init__ only, not by CLIP's _init_weights
                init.constant_(clip.logit_scale, clip.config.logit_scale_init_value)

    @classmethod
    def is_custom_code(cls) -> bool:
        """False: :meth:`_init_weights` writes through ``transformers.initialization``, which skips tensors
        already loaded, so `transformers` may visit every module (as for its own models). As custom code it
        would skip modules without parameters of their own, and with them CLIP's attention and MLP inits."""
        return False

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
        """``PreTrainedModel.from_pretrained`` that refuses tensors of the wrong shape.

        As in `transformers`, tensors missing from the checkpoint are initialised (:meth:`_init_weights`)
        and tensors the model does not have are dropped, both listed in ``output_loading_info`` and
        warned about (so an ``export_for_inference()`` folder loads into a training model). A tensor of
        the wrong shape raises a ``ValueError`` naming it, unless ``ignore_mismatched_sizes=True``.
        """
        return_info = kwargs.pop("output_loading_info", False)
        allow_mismatch = kwargs.pop("ignore_mismatched_sizes", False)
        model, info = super().from_pretrained(
            *args, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs
        )
        mismatched = sorted(str(key[0] if isinstance(key, tuple) else key) for key in info.get("mismatched_keys") or ())
        if mismatched and not allow_mismatch:
            raise ValueError(
                f"The checkpoint's weights do not match {cls.__name__}: mismatched_keys: {', '.join(mismatched[:8])}"
                + (" ..." if len(mismatched) > 8 else "")
            )
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

    # ----------------------------------------------------------------------------- capabilities
    def learning_rate_roles(self) -> dict[str, str]:
        """Role of every parameter (by ``named_parameters`` name): ``"backbone"`` (inside a
        ``backbone_modules`` module), ``"heads"`` (inside a ``head_multiplier_modules`` module, or any
        non-backbone parameter when that is None) or ``"new"`` (the other new modules). A listed module
        this configuration did not build (an attribute set to None) holds no parameter."""
        backbone = self._parameters_of(self.backbone_modules)
        heads = None if self.head_multiplier_modules is None else self._parameters_of(self.head_multiplier_modules)
        return {
            name: "backbone" if id(parameter) in backbone
            else "heads" if heads is None or id(parameter) in heads else "new"
            for name, parameter in self.named_parameters()
        }

    def _parameters_of(self, paths: tuple[str, ...]) -> set[int]:
        """``id`` of every parameter inside the submodules at the dotted attribute ``paths``."""
        found = set()
        for path in paths:
            module = self
            for attribute in path.split("."):
                if module is not None and not hasattr(module, attribute):
                    raise ValueError(f"{type(self).__name__}: no submodule {path!r} (declared in its learning-rate roles)")
                module = None if module is None else getattr(module, attribute)
            if module is not None:
                found.update(id(parameter) for parameter in module.parameters())
        return found

    @property
    def can_rerank(self) -> bool:
        """Whether :meth:`rerank_scores` works on this model. False unless a method has a second stage."""
        return self.has_rerank_stage

    @property
    def rerank_k(self) -> int:
        """How many first-stage candidates :meth:`rerank_scores` re-scores by default (0: no second stage)."""
        return 0

    def rerank_scores(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, pixel_values: torch.Tensor
    ) -> torch.Tensor:
        """Second-stage score of ONE text [1, L] against K candidate images [K, 3, H, W]: [K], added to
        the first-stage cosine by ``GalleryIndex.search(..., rerank=True)``. Only where ``can_rerank``."""
        raise ValueError(f"{type(self).__name__} has no second retrieval stage (can_rerank is False)")

    @property
    def can_restore_images(self) -> bool:
        """Whether :meth:`restore_image` works on this model (a trained image restoration head)."""
        return False

    def restore_image(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The method's image restoration task, for pictures: ``(input the encoder saw, restored)``, each
        [N, 3, H, W] normalised pixels. Only where ``can_restore_images``."""
        raise ValueError(f"{type(self).__name__} has no image restoration head (can_restore_images is False)")

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

    # ----------------------------------------------------------------------------- forward
    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pids: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **batch_inputs,
    ) -> TIReIDOutput | tuple:
        """Encode the batch, compute the method's losses, return :class:`TIReIDOutput`.

        Args:
            pixel_values: [N, 3, H, W]; input_ids / attention_mask: [N, L] right-padded, text i
                describes image i.
            pids: [N] identities. Losses are computed only when given and the model is not
                ``inference_only`` (one rule for every method); otherwise ``loss`` is None, ``losses`` {}.
            output_attentions / output_hidden_states: return the CLIP towers' attentions / hidden states
                over the batch in ``text_model_output`` / ``vision_model_output`` (None: the config's
                setting). They come from one more pass of each tower over ``pixel_values`` / ``input_ids``,
                run only when asked.
            return_dict: False returns ``output.to_tuple()`` (None: ``config.return_dict``).
            **batch_inputs: the method's extra batch inputs (what its ``text_transforms`` produce, a
                ``generator``, ...), passed to :meth:`compute_losses`; inputs it does not take are ignored.

        ``image_embeds``/``text_embeds``/``logits_per_text`` are the inference path's (:meth:`embed_pair`).
        """
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = self.config.return_dict if return_dict is None else return_dict
        with_losses = pids is not None and not self.config.inference_only
        if with_losses and pids.shape != (pixel_values.shape[0],):
            raise ValueError(f"pids must have shape [batch={pixel_values.shape[0]}], got {list(pids.shape)}")
        features = self.encode_batch(pixel_values, input_ids, attention_mask, with_losses)
        features.image_embeds, features.text_embeds, features.logits_per_text = self.embed_pair(
            features.image_features, features.text_features
        )
        losses = {}
        if with_losses:
            losses = self.compute_losses(features, pixel_values, input_ids, attention_mask, pids, **batch_inputs)
        towers = {}
        if output_attentions or output_hidden_states:
            requested = dict(output_attentions=output_attentions, output_hidden_states=output_hidden_states)
            towers = dict(
                text_model_output=self.clip.text_model(input_ids=input_ids, attention_mask=attention_mask, **requested),
                vision_model_output=self.clip.vision_model(pixel_values=pixel_values, **requested),
            )
        output = TIReIDOutput(
            loss=self.combine_losses(losses),
            losses=losses,
            image_embeds=features.image_embeds,
            text_embeds=features.text_embeds,
            logits_per_text=features.logits_per_text,
            **towers,
        )
        return output if return_dict else output.to_tuple()

    def encode_batch(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, with_losses: bool
    ) -> PairFeatures:
        """The encoding step of :meth:`forward`: the inference-path features, plus what the losses reuse
        when ``with_losses``. Default: :meth:`image_retrieval_features` / :meth:`text_retrieval_features`."""
        return PairFeatures(self.image_retrieval_features(pixel_values),
                            self.text_retrieval_features(input_ids, attention_mask))

    def compute_losses(
        self, features: PairFeatures, pixel_values: torch.Tensor, input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None, pids: torch.Tensor, **batch_inputs,
    ) -> dict[str, torch.Tensor]:
        """The method's loss hook: UNWEIGHTED scalar loss terms by name (``forward`` weights them with
        ``config.loss_weight``). ``features`` is what :meth:`encode_batch` returned, with the embeddings
        and ``logits_per_text`` filled in; the other arguments are ``forward``'s."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_losses (the method's loss terms)")

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
        :meth:`build_id_classifier`); refuses to silently skip a switched-on ID loss. The range check of
        ``pids`` reads their values, so it runs eagerly only: a traced forward (``torch.export``,
        ``torch.compile``) has no value to branch on and skips it."""
        if classifier is None:
            raise ValueError(
                f"{loss_name}: the ID loss is on ({loss_name}_loss_weight={self.config.loss_weight(loss_name)}) but "
                "config.num_ids is 0; set num_ids to the number of training identities or the weight to 0"
            )
        if not torch.compiler.is_compiling() and (pids.min() < 0 or pids.max() >= self.config.num_ids):
            raise ValueError(f"{loss_name}: pids must lie in [0, num_ids={self.config.num_ids}), got [{pids.min()}, {pids.max()}]")
        return id_loss(classifier(image_features), classifier(text_features), pids)

    def wants_loss(self, name: str) -> bool:
        """Whether loss term ``name`` is computed: training model and a non-zero weight."""
        return not self.config.inference_only and self.config.loss_weight(name) != 0

