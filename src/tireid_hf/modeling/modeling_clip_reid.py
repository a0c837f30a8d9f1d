"""The `clip_reid` baseline: CLIP fine-tuned with SDM + ID (IRRA without its MLM head). Remote code."""

from __future__ import annotations

from .base import PairFeatures, TIReIDPreTrainedModel
from .configuration_clip_reid import ClipReIDConfig
from .losses import semi_hard_ranking_loss


class ClipReIDModel(TIReIDPreTrainedModel):
    """Dual CLIP encoder; retrieval uses the class token (image) and end-of-text token (text).

    Losses (``output.losses``): ``sdm`` over the batch similarity matrix, ``id`` from a classifier
    shared by both modalities applied to the un-normalised global features (as IRRA does), and, when
    ``ranking_loss_weight`` is set, ``ranking``: LGUR's :func:`~.losses.semi_hard_ranking_loss` of the
    normalised global embeddings (margin ``ranking_margin``, image and text anchors, summed over anchors;
    a random semi-hard negative in training mode, the expectation over that draw in evaluation mode).
    """

    config_class = ClipReIDConfig

    def __init__(self, config: ClipReIDConfig):
        super().__init__(config)
        self.id_classifier = self.build_id_classifier(config.embed_dim)
        self.post_init()

    def compute_losses(self, features: PairFeatures, pixel_values, input_ids, attention_mask, pids, **batch_inputs):
        """``sdm``, ``id`` and ``ranking`` of the global features, each when its weight is non-zero (see the class
        docstring)."""
        losses = self.alignment_losses(features.image_features, features.text_features, features.logits_per_text, pids,
                                       self.id_classifier)
        if self.wants_loss("ranking"):
            losses["ranking"] = semi_hard_ranking_loss(features.image_embeds, features.text_embeds, pids,
                                                       self.config.ranking_margin, expected=not self.training,
                                                       hard_fallback=self.config.ranking_hard_fallback)
        return losses


ClipReIDModel.register_for_auto_class("AutoModel")
