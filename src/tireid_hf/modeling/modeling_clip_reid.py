"""The `clip_reid` baseline: CLIP fine-tuned with SDM + ID (IRRA without its MLM head). Remote code."""

from __future__ import annotations

import torch

from .base import TIReIDOutput, TIReIDPreTrainedModel
from .configuration_clip_reid import ClipReIDConfig


class ClipReIDModel(TIReIDPreTrainedModel):
    """Dual CLIP encoder; retrieval uses the class token (image) and end-of-text token (text).

    Losses (``output.losses``): ``sdm`` over the batch similarity matrix, ``id`` from a classifier
    shared by both modalities applied to the un-normalised global features (as IRRA does).
    """

    config_class = ClipReIDConfig

    def __init__(self, config: ClipReIDConfig):
        super().__init__(config)
        self.id_classifier = self.build_id_classifier(config.embed_dim)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pids: torch.Tensor | None = None,
        **kwargs,
    ) -> TIReIDOutput:
        """Args: pixel_values [N, 3, H, W], input_ids/attention_mask [N, L] (text i describes image i),
        pids [N] identities (losses are computed only when given)."""
        image_features = self.encode_image(pixel_values).global_features
        text_features = self.encode_text(input_ids, attention_mask).global_features
        image_embeds, text_embeds, logits_per_text = self.embed_pair(image_features, text_features)
        losses = {}
        if pids is not None:
            losses = self.alignment_losses(image_features, text_features, logits_per_text, pids, self.id_classifier)
        return TIReIDOutput(
            loss=self.combine_losses(losses),
            losses=losses,
            image_embeds=image_embeds,
            text_embeds=text_embeds,
            logits_per_text=logits_per_text,
        )


ClipReIDModel.register_for_auto_class("AutoModel")
