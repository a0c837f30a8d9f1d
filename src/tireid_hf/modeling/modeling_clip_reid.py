"""The `clip_reid` baseline: CLIP fine-tuned with SDM + ID (IRRA without its MLM head). Remote code."""

from __future__ import annotations

from .base import PairFeatures, TIReIDPreTrainedModel
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

    def compute_losses(self, features: PairFeatures, pixel_values, input_ids, attention_mask, pids, **batch_inputs):
        """``sdm`` and ``id`` of the global features (see the class docstring)."""
        return self.alignment_losses(features.image_features, features.text_features, features.logits_per_text, pids,
                                     self.id_classifier)


ClipReIDModel.register_for_auto_class("AutoModel")
