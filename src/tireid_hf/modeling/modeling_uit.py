"""`uit`: CLIP + text-guided image restoration + hardest-negative triplet (UIT / SEN). Remote code."""

from __future__ import annotations

import torch
from torch import nn
from transformers import initialization as init

from .base import EncoderOutput, PairFeatures, TIReIDPreTrainedModel
from .configuration_uit import UITConfig
from .layers import DecoderLayer, MultiHeadAttention
from .losses import hardest_negative_triplet_loss, masked_patch_mse

# SEN's luma weights of (R, G, B) (ITU-R BT.601): the weighted-RGB grey image of the restoration task.
GREY_WEIGHTS = (0.2989, 0.587, 0.114)
# Seed of the patch mask in eval mode when no generator is given, so validation losses are comparable.
EVAL_MASK_SEED = 0


def sincos_position_table(width: int, grid_size: tuple[int, int]) -> torch.Tensor:
    """Fixed 2-D sin-cos position embeddings (MAE's) of a (rows x cols) grid: [rows * cols, width].

    The first ``width / 2`` channels encode the row, the last ``width / 2`` the column, each as
    ``[sin(pos * w_k), cos(pos * w_k)]`` with ``w_k = 10000^(-k / (width / 4))``, k = 0 .. width/4 - 1.
    Patches are in row-major order (as CLIP's patch embedding flattens them).
    """
    if width % 4:
        raise ValueError(f"a 2-D sin-cos table needs a width divisible by 4, got {width}")
    rows, cols = grid_size
    frequencies = 1.0 / 10000 ** (torch.arange(width // 4, dtype=torch.float64) / (width // 4))

    def encode(positions: torch.Tensor) -> torch.Tensor:
        angles = positions.to(torch.float64)[:, None] * frequencies[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    row_index, col_index = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    return torch.cat([encode(row_index.flatten()), encode(col_index.flatten())], dim=1).to(torch.float32)


def patchify(pixel_values: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[N, C, rows * p, cols * p] -> [N, rows * cols, p * p * C]: row-major patches, each flattened as (y, x, channel)."""
    batch, channels, height, width = pixel_values.shape
    rows, cols = height // patch_size, width // patch_size
    patches = pixel_values.reshape(batch, channels, rows, patch_size, cols, patch_size)
    return patches.permute(0, 2, 4, 3, 5, 1).reshape(batch, rows * cols, patch_size * patch_size * channels)


def unpatchify(patches: torch.Tensor, patch_size: int, grid_size: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`patchify`: [N, rows * cols, p * p * C] -> [N, C, rows * p, cols * p]."""
    batch, rows, cols = patches.shape[0], *grid_size
    channels = patches.shape[-1] // (patch_size * patch_size)
    pixels = patches.reshape(batch, rows, cols, patch_size, patch_size, channels)
    return pixels.permute(0, 5, 1, 3, 2, 4).reshape(batch, channels, rows * patch_size, cols * patch_size)


class TextBottleneck(nn.Module):
    """SEN's text-guided step: the image tokens are REPLACED by what they read from the caption::

        x' = LN_out(CrossAttn(LN_q(x), text))          [N, 1 + P, W]    (no residual, no MLP)

    The queries (kept patches, mask tokens, positions) only choose which caption tokens each position
    reads. ``text`` arrives normalised and projected (the decoder's ``text_embed``).
    """

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.query_norm = nn.LayerNorm(width)
        self.attention = MultiHeadAttention(width, num_heads)
        self.output_norm = nn.LayerNorm(width)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor, memory_padding_mask: torch.Tensor | None = None):
        """queries [N, Lq, W], memory (the text) [N, L, W], memory_padding_mask [N, L] (True = padding)
        -> [N, Lq, W]; called like a cross-attention :class:`~.layers.DecoderLayer`."""
        read = self.attention(self.query_norm(queries), memory, memory, key_padding_mask=memory_padding_mask)[0]
        return self.output_norm(read)


class RestorationDecoder(nn.Module):
    """UIT's light decoder: restores the colour patches of a masked grey image, guided by the caption.

    ::

        x = Linear(LN(encoder tokens of the kept patches + class token))          [N, 1 + M, W]
        x = [class, mask_token at dropped positions / kept tokens at theirs]       [N, 1 + P, W] (grid order)
        x = x + [0, sincos_position_table(W, grid)]                                (fixed, not learned)
        t = LN(text tokens), then a Linear to W only when W != D (as SEN)           text padding ignored below
        x = TextBottleneck(x, t)             (text_bottleneck=True, SEN: x replaced by what it reads from t)
          | DecoderLayer(cross-attention only)(x, memory=t)   (False: x + CrossAttn + MLP, residual)
        x = 4 x DecoderLayer(self-attention only)(x)
        patches = Linear(LN(x[:, 1:]))                                             [N, P, p * p * 3]

    Args:
        embed_dim: width D of the CLIP token features (image and text, joint space).
        width, num_heads, num_layers, mlp_ratio: the decoder's shape.
        grid_size: (rows, cols) of the patch grid; patch_size: pixels per patch side.
        text_bottleneck: SEN's text bottleneck (:class:`TextBottleneck`) instead of a residual
            cross-attention layer.
    """

    def __init__(self, embed_dim: int, width: int, num_heads: int, num_layers: int, mlp_ratio: float,
                 grid_size: tuple[int, int], patch_size: int, text_bottleneck: bool = True):
        super().__init__()
        self.grid_size = tuple(grid_size)
        self.image_embed = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, width))
        resize_text = [nn.Linear(embed_dim, width)] if width != embed_dim else []
        self.text_embed = nn.Sequential(nn.LayerNorm(embed_dim), *resize_text)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.position_embedding = nn.Buffer(self.position_table(), persistent=False)
        self.text_attention = (
            TextBottleneck(width, num_heads) if text_bottleneck
            else DecoderLayer(width, num_heads, self_attention=False, cross_attention=True, mlp_ratio=mlp_ratio)
        )
        self.layers = nn.ModuleList(
            DecoderLayer(width, num_heads, self_attention=True, cross_attention=False, mlp_ratio=mlp_ratio)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(width)
        self.predict = nn.Linear(width, patch_size * patch_size * 3)

    def position_table(self) -> torch.Tensor:
        """[1, 1 + rows * cols, W]: zeros for the class token, then the 2-D sin-cos table."""
        width = self.mask_token.shape[-1]
        grid = sincos_position_table(width, self.grid_size)
        return torch.cat([grid.new_zeros(1, width), grid], dim=0).unsqueeze(0)

    def forward(self, image_tokens: torch.Tensor, keep_patches: torch.Tensor, text_tokens: torch.Tensor,
                text_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Args:
            image_tokens: [N, 1 + M, D] encoder tokens of the class token and the M kept patches, in
                the order of ``keep_patches``.
            keep_patches: [N, M] grid indices (row-major) of the kept patches.
            text_tokens: [N, L, D] caption token features; text_padding_mask: [N, L] bool, True = padding.
        Returns: [N, rows * cols, p * p * 3] predicted pixels of every patch (normalised colour).
        """
        kept = self.image_embed(image_tokens)
        batch, width = kept.shape[0], kept.shape[-1]
        num_patches = self.position_embedding.shape[1] - 1
        index = keep_patches.unsqueeze(-1).expand(-1, -1, width)
        patches = self.mask_token.to(kept.dtype).expand(batch, num_patches, width).scatter(1, index, kept[:, 1:])
        hidden = torch.cat([kept[:, :1], patches], dim=1) + self.position_embedding.to(kept.dtype)
        hidden = self.text_attention(hidden, self.text_embed(text_tokens), memory_padding_mask=text_padding_mask)
        for layer in self.layers:
            hidden = layer(hidden)
        return self.predict(self.norm(hidden[:, 1:]))


class UITModel(TIReIDPreTrainedModel):
    """UIT over the shared CLIP base: full CLIP dual encoder; retrieval uses CLIP's global features
    (class token / end-of-text token), so inference costs exactly the baseline's.

    Training losses (``output.losses``, unweighted; total ``sdm + id + 10 triplet + 10 tir`` by default):

    * ``sdm``: :func:`~.losses.sdm_loss` over ``logits_per_text``.
    * ``id``: the shared ID classifier on the un-normalised global features (as IRRA / SEN).
    * ``triplet``: :func:`~.losses.hardest_negative_triplet_loss` on the normalised global embeddings,
      margin ``triplet_margin`` (0.05), hardest other-identity negative per anchor, both directions.
    * ``tir`` (text-guided image restoration): the colour image ``x`` (normalised) is made grey
      (:meth:`grey_pixels`: SEN's ``0.2989 R + 0.587 G + 0.114 B`` on the normalised channels,
      replicated to 3 channels); a random ``config.num_kept_patches`` of its P patches are kept per image and
      encoded (after their position embeddings, class token always kept) by the SAME CLIP image
      encoder; :class:`RestorationDecoder` fills the dropped positions with a learned mask token and
      predicts every patch's colour pixels attending to the caption's tokens;
      ``tir = `` :func:`~.losses.masked_patch_mse` ``(prediction, patchify(x), dropped)``: only the
      dropped patches count.

    The patch mask comes from ``generator`` when one is given, else from the global RNG in training
    mode and from a fixed seed (``EVAL_MASK_SEED``) in eval mode.

    Text augmentation: ``text_transforms = ("key_word_augmentation",)``; the training collator keeps
    only a caption's nouns, adjectives and pronouns with probability ``key_word_augmentation_probability``.

    Follows SEN (Delong-liu-bupt/SEN) except where the model card lists a choice: the decoder reuses
    the main pass's text tokens with padding masked; ``tir_grey_input="pixel"`` takes the grey image in
    pixel space and ``tir_text_bottleneck=False`` replaces SEN's bottleneck by a residual cross-attention
    layer (both off by default).
    """

    config_class = UITConfig
    text_transforms = ("key_word_augmentation",)
    # as SEN's optimiser: the text attention, the decoder's layers and the classifier at the head rate
    head_multiplier_modules = ("restoration_decoder.text_attention", "restoration_decoder.layers", "id_classifier")

    def __init__(self, config: UITConfig):
        super().__init__(config)
        self.id_classifier = self.build_id_classifier(config.embed_dim)
        self.restoration_decoder = None
        if config.use_tir and self.wants_loss("tir"):
            self.restoration_decoder = RestorationDecoder(
                config.embed_dim, config.decoder_width, config.tir_decoder_heads, config.tir_decoder_layers,
                config.tir_decoder_mlp_ratio, config.grid_size, config.clip_config.vision_config.patch_size,
                config.tir_text_bottleneck,
            )
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        """The base initialisation, plus the decoder's zero mask token (as SEN) and its fixed sin-cos table."""
        super()._init_weights(module)
        if isinstance(module, RestorationDecoder):
            init.zeros_(module.mask_token)
            init.copy_(module.position_embedding, module.position_table())

    @property
    def patch_size(self) -> int:
        return self.config.clip_config.vision_config.patch_size

    # ----------------------------------------------------------------------------- training
    def encode_batch(self, pixel_values, input_ids, attention_mask, with_losses) -> PairFeatures:
        """Global features; the caption's token features too when the restoration loss will read them."""
        restore = with_losses and self.restoration_decoder is not None
        image_features = self.encode_image(pixel_values).global_features
        text = self.encode_text(input_ids, attention_mask, return_tokens=restore)
        return PairFeatures(image_features, text.global_features, text=text)

    def compute_losses(self, features: PairFeatures, pixel_values, input_ids, attention_mask, pids,
                       generator: torch.Generator | None = None, **batch_inputs) -> dict[str, torch.Tensor]:
        """``sdm``, ``id``, ``triplet`` and ``tir`` (see the class docstring).

        Args:
            generator: optional source of the restoration's patch mask.
        """
        losses = self.alignment_losses(features.image_features, features.text_features, features.logits_per_text,
                                       pids, self.id_classifier)
        if self.wants_loss("triplet"):
            losses["triplet"] = hardest_negative_triplet_loss(features.image_embeds, features.text_embeds, pids,
                                                              self.config.triplet_margin)
        if self.restoration_decoder is not None:
            _, keep_patches, predicted = self._restore(pixel_values, features.text, generator)
            target = patchify(pixel_values, self.patch_size)
            losses["tir"] = masked_patch_mse(predicted, target, self.dropped_patches(keep_patches))
        return losses

    # ----------------------------------------------------------------------------- restoration
    def grey_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] normalised colour -> [N, 3, H, W] grey image the encoder sees (``config.tir_grey_input``).

        ``"normalised"`` (SEN): ``g = 0.2989 x_R + 0.587 x_G + 0.114 x_B``, ``out_c = g`` for every channel.
        ``"pixel"``: ``rgb = x * std + mean``; ``g = 0.2989 r + 0.587 g + 0.114 b``; ``out_c = (g - mean_c) / std_c``.
        """
        weights = pixel_values.new_tensor(GREY_WEIGHTS).view(1, 3, 1, 1)
        if self.config.tir_grey_input == "normalised":
            return (pixel_values * weights).sum(dim=1, keepdim=True).expand_as(pixel_values)
        mean = pixel_values.new_tensor(self.config.image_mean).view(1, 3, 1, 1)
        std = pixel_values.new_tensor(self.config.image_std).view(1, 3, 1, 1)
        grey = ((pixel_values * std + mean) * weights).sum(dim=1, keepdim=True)
        return (grey - mean) / std

    def sample_kept_patches(self, batch_size: int, device: torch.device | str,
                            generator: torch.Generator | None = None) -> torch.Tensor:
        """A uniformly random subset of ``config.num_kept_patches`` patches per image: [N, M] grid
        indices in ascending order (from ``generator``, else the global RNG)."""
        rows, cols = self.config.grid_size
        noise_device = generator.device if generator is not None else device
        noise = torch.rand(batch_size, rows * cols, generator=generator, device=noise_device).to(device)
        return noise.argsort(dim=1)[:, : self.config.num_kept_patches].sort(dim=1).values

    def dropped_patches(self, keep_patches: torch.Tensor) -> torch.Tensor:
        """[N, M] kept grid indices -> [N, rows * cols] bool, True where the patch was dropped."""
        rows, cols = self.config.grid_size
        dropped = torch.ones(keep_patches.shape[0], rows * cols, dtype=torch.bool, device=keep_patches.device)
        return dropped.scatter(1, keep_patches, False)

    def _restore(self, pixel_values: torch.Tensor, text: EncoderOutput, generator: torch.Generator | None):
        """Grey + mask + encode + decode. Returns (grey pixels [N, 3, H, W], kept indices [N, M],
        predicted patches [N, P, p * p * 3])."""
        if self.restoration_decoder is None:
            raise ValueError(
                "this UIT model has no restoration decoder (inference_only, use_tir=False or tir_loss_weight=0)"
            )
        if generator is None and not self.training:
            generator = torch.Generator(device=pixel_values.device).manual_seed(EVAL_MASK_SEED)
        grey = self.grey_pixels(pixel_values)
        keep_patches = self.sample_kept_patches(pixel_values.shape[0], pixel_values.device, generator)
        tokens = self.encode_image(grey, return_tokens=True, keep_patches=keep_patches).token_features
        padding = None if text.attention_mask is None else text.attention_mask == 0
        predicted = self.restoration_decoder(tokens, keep_patches, text.token_features, padding)
        return grey, keep_patches, predicted

    @property
    def can_restore_images(self) -> bool:
        """Whether :meth:`restore_image` works: the restoration decoder exists (a training model with ``tir`` on)."""
        return self.restoration_decoder is not None

    @torch.no_grad()
    def restore_image(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The restoration task on images and their captions, for visualisation (no gradients).

        Args:
            pixel_values: [N, 3, H, W] CLIP-normalised colour images; input_ids/attention_mask: [N, L] captions.
            generator: source of the patch mask (eval mode without one: a fixed seed).
        Returns:
            masked_grey: [N, 3, H, W] the normalised grey image the encoder saw, dropped patches set to
                0 (the normalisation mean).
            restored: [N, 3, H, W] normalised colour prediction on the dropped patches, the grey input on
                the kept ones.
        """
        text = self.encode_text(input_ids, attention_mask, return_tokens=True)
        grey, keep_patches, predicted = self._restore(pixel_values, text, generator)
        dropped = self.dropped_patches(keep_patches).unsqueeze(-1)
        grey_patches = patchify(grey, self.patch_size)
        grid = self.config.grid_size
        masked_grey = unpatchify(grey_patches.masked_fill(dropped, 0.0), self.patch_size, grid)
        restored = unpatchify(torch.where(dropped, predicted.to(grey_patches.dtype), grey_patches), self.patch_size, grid)
        return masked_grey, restored


UITModel.register_for_auto_class("AutoModel")
