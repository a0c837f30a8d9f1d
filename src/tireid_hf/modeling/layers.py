"""Blocks shared by several TIReID heads. Remote code: imports only torch and transformers."""

from __future__ import annotations

from torch import nn


class IdentityClassifier(nn.Linear):
    """One linear classifier over ``num_ids`` identities, shared by both modalities:
    [N, D] features -> [N, num_ids] logits. Initialised N(0, 0.001) with zero bias, as IRRA's."""

    def __init__(self, in_features: int, num_ids: int):
        super().__init__(in_features, num_ids)
