"""The `clip_reid` baseline: CLIP fine-tuned with SDM + ID (IRRA without its MLM head). Remote code."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import TIReIDOutput, TIReIDPreTrainedModel
from .configuration_clip_reid import ClipReIDConfig
from .losses import sdm_loss


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
        image_embeds, text_embeds = F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1)
        logits_per_text = self.logit_scale * text_embeds @ image_embeds.t()

        losses = {}
        if pids is not None:
            if self.wants_loss("sdm"):
                losses["sdm"] = sdm_loss(logits_per_text, pids)
            if self.wants_loss("id"):
                losses["id"] = self.identity_loss(self.id_classifier, image_features, text_features, pids)
        return TIReIDOutput(
            loss=self.combine_losses(losses),
            losses=losses,
            image_embeds=image_embeds,
            text_embeds=text_embeds,
            logits_per_text=logits_per_text,
        )


ClipReIDModel.register_for_auto_class("AutoModel")
