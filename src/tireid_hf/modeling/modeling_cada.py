"""CADA: Cross-Modal Adaptive Dual Association (Lin et al., IEEE TMM 2024) over the CLIP base. Remote code."""

from __future__ import annotations

import torch
from torch import nn

from .base import PairFeatures, TIReIDPreTrainedModel
from .configuration_cada import SUMMARY_LOSSES, CADAConfig
from .layers import DecoderLayer
from .losses import IGNORE_INDEX, hardest_negatives, masked_token_loss, matching_loss, ndf_loss


def end_of_text_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """[N, L] right-padded mask -> [N] position of the last real token (CLIP's end-of-text token)."""
    return attention_mask.sum(dim=1) - 1


def pool_end_of_text(tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[N, L, D] decoded text tokens -> [N, D] the feature at the end-of-text position."""
    rows = torch.arange(tokens.shape[0], device=tokens.device)
    return tokens[rows, end_of_text_positions(attention_mask)]


def pool_parts(tokens: torch.Tensor, attention_mask: torch.Tensor, num_parts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of each of ``num_parts`` contiguous parts of a caption's WORD tokens.

    The word tokens of row i are positions ``1 .. n_i`` (between the start- and end-of-text tokens,
    ``n_i = sum(mask_i) - 2``); word ``c`` (0-based) goes to part ``floor(c * num_parts / n_i)``, so the
    parts are as equal as possible and in caption order.

    Args:
        tokens: [N, L, D] decoded text tokens; attention_mask: [N, L] right-padded.
    Returns: part features [N, num_parts, D] and ``valid`` [N, num_parts] bool (a caption with fewer
    words than parts leaves some parts empty: they are not valid and their feature is 0).
    """
    length = tokens.shape[1]
    num_words = (attention_mask.sum(dim=1, keepdim=True) - 2).clamp(min=1)  # [N, 1]
    word_index = torch.arange(length, device=tokens.device).view(1, -1) - 1  # position j holds word j - 1
    is_word = (word_index >= 0) & (word_index < attention_mask.sum(dim=1, keepdim=True) - 2)
    part_of_word = torch.div(word_index.clamp(min=0) * num_parts, num_words, rounding_mode="floor")  # [N, L]
    parts = torch.arange(num_parts, device=tokens.device).view(1, -1, 1)
    membership = ((part_of_word.unsqueeze(1) == parts) & is_word.unsqueeze(1)).to(tokens.dtype)  # [N, P, L]
    counts = membership.sum(dim=-1)
    pooled = membership @ tokens / counts.clamp(min=1).unsqueeze(-1)
    return pooled, counts > 0


class CADAModel(TIReIDPreTrainedModel):
    """CLIP dual encoder + CADA's decoder-based adaptive dual association module (each part removable
    by a zero loss weight, see [`CADAConfig`]).

    * ``decoder``: ``decoder_layers`` x [`DecoderLayer`] (self-attention over the text tokens, padding
      masked; cross-attention to ALL image tokens, class token included, as BLIP's fusion; MLP) + a
      final LayerNorm, at the joint width D, over CLIP's projected token features (:meth:`decode`).
    * ATP: ``itm_head`` Linear(D, 2) on the decoded end-of-text token. Each pair i gives the positive
      (text i, image i) and the negatives (text i, hardest image of text i), (hardest text of image i,
      image i), mined with same-identity pairs masked (:func:`~.losses.hardest_negatives`) from the
      detached dot products ``t_i . v_j`` of the UN-normalised global features (the reference's
      ``text_feat @ image_feat^T``, not the cosine): ``itm_global`` = :func:`~.losses.matching_loss` over these 3N
      pairs. ``itm_local``: the same decoded pairs' word tokens in ``num_local_parts`` contiguous parts
      (:func:`pool_parts`), each part classified by ``itm_local_head`` with its pair's label.
    * ARA: ``masked_input_ids`` (attribute tokens replaced by ``mask_token_id`` by the collator's
      :func:`tireid_hf.processing.mask_attribute_tokens`) through the same text encoder and decoder;
      ``mlm_head`` predicts them: ``ara`` = :func:`~.losses.masked_token_loss` on masked positions only.
    * ``global``: :func:`~.losses.ndf_loss` of ``logits_per_text`` (``config.ndf_reduction``).
    * ``sdm`` / ``id`` (off by default; not CADA's): the baseline's SDM and shared-classifier ID loss
      (:meth:`alignment_losses`) on the same global features, for ablation rows.

    Total: ``global + itm_global + itm_local + 0.1 ara`` (config weights; ``itm`` = the two matching
    parts, reported unweighted). No ID loss by default (the reference has none).

    Inference: the global CLIP embeddings, cosine ranking; the decoder and ``itm_head`` stay in the
    exported model for :meth:`rerank_scores`; the local and MLM heads are training-only.
    """

    config_class = CADAConfig
    has_rerank_stage = True
    text_transforms = ("attribute_masking",)

    def __init__(self, config: CADAConfig):
        super().__init__(config)
        width = config.embed_dim
        self.id_classifier = self.build_id_classifier(width)
        # the matching head serves re-ranking too, so it is kept in an inference-only model
        self.itm_head = nn.Linear(width, 2) if config.itm_global_loss_weight != 0 else None
        self.itm_local_head = nn.Linear(width, 2) if self.wants_loss("itm_local") else None
        self.mlm_head = self._build_mlm_head(width) if self.wants_loss("ara") else None
        if self.itm_head is None and self.itm_local_head is None and self.mlm_head is None:
            self.decoder, self.decoder_norm = None, None
        else:
            self.decoder = nn.ModuleList(
                DecoderLayer(width, config.decoder_num_heads, self_attention=True, cross_attention=True,
                             mlp_ratio=config.decoder_mlp_ratio)
                for _ in range(config.decoder_layers)
            )
            self.decoder_norm = nn.LayerNorm(width)
        self.post_init()

    def _build_mlm_head(self, width: int) -> nn.Sequential:
        """Linear(D, D) -> GELU -> LayerNorm(D) -> Linear(D, vocab): [M, D] -> [M, vocab] (IRRA's MLM head)."""
        vocab_size = self.config.clip_config.text_config.vocab_size
        return nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.LayerNorm(width), nn.Linear(width, vocab_size))

    # ----------------------------------------------------------------------------- decoder
    def decode(self, text_tokens: torch.Tensor, attention_mask: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        """Text tokens attend to image tokens, layer by layer.

        Args:
            text_tokens: [N, L, D] projected text token features (queries); attention_mask: [N, L] (1 = real).
            image_tokens: [N, 1 + P, D] projected image token features (memory, all real).
        Returns: [N, L, D] decoded text tokens (after the final LayerNorm).
        """
        if self.decoder is None:
            raise ValueError("this CADA model has no decoder: every loss that needs it has weight 0")
        padding = attention_mask == 0
        hidden = text_tokens
        for layer in self.decoder:
            hidden = layer(hidden, image_tokens, query_padding_mask=padding)
        return self.decoder_norm(hidden)

    # ----------------------------------------------------------------------------- losses
    def matching_losses(
        self, image_tokens: torch.Tensor, text_tokens: torch.Tensor, attention_mask: torch.Tensor,
        mining_similarity: torch.Tensor, pids: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """ATP: ``itm_global`` / ``itm_local`` over positives and in-batch hardest negatives (see the class
        docstring), and their sum ``itm``. Pairs whose identity fills the whole batch have no negative
        and contribute their positive only.

        Args:
            image_tokens: [N, 1 + P, D]; text_tokens: [N, L, D]; attention_mask: [N, L].
            mining_similarity: [N, N] text rows x image columns, the scores negatives are mined from.
            pids: [N] identities.
        """
        image_for_text, text_for_image, has_negative = hardest_negatives(mining_similarity, pids)
        pairs = torch.arange(pids.shape[0], device=pids.device)
        with_negative = pairs[has_negative]
        text_index = torch.cat([pairs, with_negative, text_for_image[has_negative]])
        image_index = torch.cat([pairs, image_for_text[has_negative], with_negative])
        is_match = torch.cat([torch.ones_like(pairs), torch.zeros_like(with_negative), torch.zeros_like(with_negative)])
        mask = attention_mask[text_index]
        decoded = self.decode(text_tokens[text_index], mask, image_tokens[image_index])

        losses = {}
        if self.wants_loss("itm_global"):
            losses["itm_global"] = matching_loss(self.itm_head(pool_end_of_text(decoded, mask)), is_match)
        if self.wants_loss("itm_local"):
            parts, valid = pool_parts(decoded, mask, self.config.num_local_parts)
            part_labels = is_match.view(-1, 1).expand_as(valid)
            losses["itm_local"] = matching_loss(self.itm_local_head(parts[valid]), part_labels[valid])
        losses["itm"] = sum(losses[name] for name in SUMMARY_LOSSES["itm"] if name in losses)
        return losses

    def attribute_loss(
        self, image_tokens: torch.Tensor, masked_input_ids: torch.Tensor | None, attention_mask: torch.Tensor,
        masked_labels: torch.Tensor | None, input_ids: torch.Tensor,
    ) -> torch.Tensor:
        """ARA: predict the masked attribute tokens of ``masked_input_ids`` [N, L] from the image tokens;
        ``masked_labels`` [N, L] holds the original ids at masked positions and -100 elsewhere."""
        if masked_input_ids is None or masked_labels is None:
            raise ValueError(
                "ara: the masked attribute loss is on (ara_loss_weight="
                f"{self.config.ara_loss_weight}) but forward got no masked_input_ids/masked_labels [batch, length]; "
                "the training collator builds them with tireid_hf.processing.mask_attribute_tokens "
                "(or set ara_loss_weight=0)"
            )
        for name, tensor in (("masked_input_ids", masked_input_ids), ("masked_labels", masked_labels)):
            if tensor.shape != input_ids.shape:
                raise ValueError(f"{name} must have the shape of input_ids {list(input_ids.shape)}, got {list(tensor.shape)}")
        vocab_size = self.config.clip_config.text_config.vocab_size
        selected = masked_labels != IGNORE_INDEX
        targets = masked_labels[selected]
        if not torch.compiler.is_compiling() and targets.numel() and (targets.min() < 0 or targets.max() >= vocab_size):
            raise ValueError(f"masked_labels must be token ids in [0, {vocab_size}) or -100, got [{targets.min()}, {targets.max()}]")
        text_tokens = self.encode_text(masked_input_ids, attention_mask, return_tokens=True).token_features
        decoded = self.decode(text_tokens, attention_mask, image_tokens)
        return masked_token_loss(self.mlm_head(decoded[selected]), targets)

    # ----------------------------------------------------------------------------- forward
    def encode_batch(self, pixel_values, input_ids, attention_mask, with_losses) -> PairFeatures:
        """Global features; with the token features of both modalities when a loss needs the decoder."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        needs_tokens = with_losses and self.decoder is not None
        image = self.encode_image(pixel_values, return_tokens=needs_tokens)
        text = self.encode_text(input_ids, attention_mask, return_tokens=needs_tokens)
        return PairFeatures(image.global_features, text.global_features, image=image, text=text)

    def compute_losses(
        self, features: PairFeatures, pixel_values, input_ids, attention_mask, pids,
        masked_input_ids: torch.Tensor | None = None, masked_labels: torch.Tensor | None = None, **batch_inputs,
    ) -> dict[str, torch.Tensor]:
        """``global``, ``sdm`` / ``id``, ``itm_global`` / ``itm_local`` / ``itm`` and ``ara``, each when its
        weight is not 0 (see the class docstring).

        Args:
            masked_input_ids / masked_labels: [N, L] the attribute-masked captions (same attention
                mask) and their targets (-100 where not masked): needed when ``ara`` is on.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        image, text, logits_per_text = features.image, features.text, features.logits_per_text
        losses = {}
        if self.wants_loss("global"):
            losses["global"] = ndf_loss(logits_per_text, pids, reduction=self.config.ndf_reduction)
        losses.update(self.alignment_losses(features.image_features, features.text_features, logits_per_text, pids,
                                            self.id_classifier))
        if self.wants_loss("itm_global") or self.wants_loss("itm_local"):
            losses.update(self.matching_losses(image.token_features, text.token_features, attention_mask,
                                               features.text_features @ features.image_features.t(), pids))
        if self.wants_loss("ara"):
            losses["ara"] = self.attribute_loss(image.token_features, masked_input_ids, attention_mask,
                                                masked_labels, input_ids)
        return losses

    # ----------------------------------------------------------------------------- re-ranking
    @property
    def can_rerank(self) -> bool:
        """Whether :meth:`rerank_scores` works: the matching head exists (``itm_global_loss_weight`` > 0)."""
        return self.itm_head is not None

    @property
    def rerank_k(self) -> int:
        """``config.rerank_k``: the first-stage candidates re-scored by default."""
        return self.config.rerank_k

    def rerank_scores(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, pixel_values: torch.Tensor
    ) -> torch.Tensor:
        """Second-stage score of ONE text against K candidate images: the ITM probability of "match",
        which ``GalleryIndex.search(..., rerank=True)`` adds to the first-stage cosine of the top
        ``config.rerank_k`` images before re-sorting them.

        Args:
            input_ids / attention_mask: [1, L] the query caption (right-padded).
            pixel_values: [K, 3, H, W] the candidate images.
        Returns: [K] ``softmax(itm_head(decode(text, image_k)))[1]``.
        """
        if self.itm_head is None:
            raise ValueError("rerank_scores needs the matching head, which this model lacks (itm_global_loss_weight=0)")
        if input_ids.dim() != 2 or input_ids.shape[0] != 1:
            raise ValueError(f"input_ids must be one caption [1, length], got {list(input_ids.shape)}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        text_tokens = self.encode_text(input_ids, attention_mask, return_tokens=True).token_features
        image_tokens = self.encode_image(pixel_values, return_tokens=True).token_features
        count = image_tokens.shape[0]
        mask = attention_mask.expand(count, -1)
        decoded = self.decode(text_tokens.expand(count, -1, -1), mask, image_tokens)
        return self.itm_head(pool_end_of_text(decoded, mask)).float().softmax(dim=-1)[:, 1]


CADAModel.register_for_auto_class("AutoModel")
