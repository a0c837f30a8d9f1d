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


ClipReIDConfig.register_for_auto_class()
