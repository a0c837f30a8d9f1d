"""Configuration of the `clip_reid` baseline (IRRA-style CLIP fine-tuning). Remote code."""

from __future__ import annotations

from .configuration_tireid import TIReIDConfig


class ClipReIDConfig(TIReIDConfig):
    r"""CLIP fine-tuned for text-to-image ReID with SDM (+ ID): the row every method is compared to.

    Args:
        sdm_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the similarity distribution matching loss (IRRA's `sdm`).
        id_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the identity classification loss (one classifier shared by both modalities;
            needs `num_ids` > 0). IRRA uses SDM + ID (+ MLM) with weight 1 each.
        ranking_loss_weight (`float`, *optional*, defaults to 0.0):
            Weight of LGUR's semi-hard ranking loss (term ``ranking``) on the L2-normalised global
            embeddings, both directions (image anchors and text anchors), summed over anchors. Off by
            default (not part of IRRA): with `sdm_loss_weight` 0 it trains CLIP's own embedding with LGUR's
            loss functions.
        ranking_margin (`float`, *optional*, defaults to 0.3):
            Margin of that ranking loss (LGUR's).
        ranking_hard_fallback (`bool`, *optional*, defaults to `False`):
            Give an anchor without a semi-hard negative a random hard one (ours) instead of dropping it
            (the reference's RankingLoss): see :func:`~.losses.semi_hard_ranking_loss`.

    Inherits every field of [`TIReIDConfig`] (`clip_config`, `image_size`, `temperature`, `num_ids`, ...).

    Example:

    ```python
    >>> from tireid_hf.modeling import ClipReIDConfig, ClipReIDModel
    >>> model = ClipReIDModel(ClipReIDConfig(num_ids=11003))
    ```
    """

    model_type = "tireid-clip_reid"
    # the zoo's facts (see TIReIDConfig): ablation rows, sweep knobs, the paper's reported figures
    zoo_ablations = {"no ID loss": {"id_loss_weight": 0.0}}
    zoo_sweep = ("id_loss_weight",)
    zoo_reported = {"backbone": "IRRA, CLIP ViT-B/16, with MLM", "cuhk-pedes": "73.38 / 66.13",
                    "icfg-pedes": "63.46 / 38.06", "rstpreid": "60.20 / 47.17"}

    sdm_loss_weight: float = 1.0
    id_loss_weight: float = 1.0
    ranking_loss_weight: float = 0.0
    ranking_margin: float = 0.3
    ranking_hard_fallback: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if not self.ranking_margin > 0:
            raise ValueError(f"ranking_margin must be > 0, got {self.ranking_margin}")


ClipReIDConfig.register_for_auto_class()
