"""Configuration of CADA (Cross-Modal Adaptive Dual Association, IEEE TMM 2024). Remote code."""

from __future__ import annotations

from .configuration_tireid import ATTRIBUTE_MASK_UNITS, CLIP_MASK_TOKEN_ID, TIReIDConfig
from .losses import NDF_REDUCTIONS

# Loss names reported in `output.losses` for logging only: their value is the sum of weighted parts.
SUMMARY_LOSSES = {"itm": ("itm_global", "itm_local")}


class CADAConfig(TIReIDConfig):
    r"""CADA over the shared CLIP base: a cross-modal decoder (text tokens attend to image patches)
    trained with image-text matching on hard negatives (ATP: global + local) and masked attribute
    prediction (ARA), plus the global SDM-style ``ndf`` loss; optional re-ranking by the matching score.

    Args:
        decoder_layers (`int`, *optional*, defaults to 4):
            Depth of the cross-modal decoder (self-attention, cross-attention to the image tokens,
            feed-forward per layer) at the joint width ``clip_config.projection_dim``. The reference
            fuses inside BLIP's 12-layer BERT; over CLIP a separate decoder is needed, and 4 layers is
            the depth of the IRRA family's cross-modal module over the same backbone.
        decoder_num_heads (`int`, *optional*, defaults to 8):
            Attention heads of the decoder (``projection_dim`` must divide by it; 512 / 8 = 64 as CLIP's).
        decoder_mlp_ratio (`float`, *optional*, defaults to 4.0):
            Hidden width of the decoder's feed-forward block over its width.
        num_local_parts (`int`, *optional*, defaults to 2):
            Contiguous parts the caption's word tokens are split into for the local matching term
            (the reference splits its token sequence in two halves).
        global_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of ``global``: SDM (tau = ``temperature`` = 0.02) + reverse KL + soft-label CE
            (:func:`~.losses.ndf_loss`). 0 computes no NDF.
        ndf_reduction (`str`, *optional*, defaults to `"reference"`):
            How ``global`` reduces its terms over the N x N similarity matrix. ``"reference"`` (the
            reference code): the two KL terms averaged over all N x N entries, plus the batch-mean
            soft-label cross-entropy, ``1/N^2 sum_ij (KL entries) + 1/N sum_i H_i``. ``"per_row"`` (ours,
            not the reference): every term a per-row sum averaged over rows,
            ``1/N sum_i (sum_j (KL entries) + H_i)``, which weights the KL terms N times more.
        itm_global_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of ``itm_global``, matching of the whole caption. 0 removes the matching head (and
            with it re-ranking).
        itm_local_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of ``itm_local``, matching of each caption part. 0 removes the local matching head.
        ara_loss_weight (`float`, *optional*, defaults to 0.1):
            Weight of ``ara``, masked attribute prediction. 0 removes the MLM head. 0.1 follows the
            reference code's ``train.py`` (global x 1 + local x 1 + ARA x 0.1); the paper puts the
            0.1 on another term.
        attribute_mask_probability (`float`, *optional*, defaults to 0.4):
            Probability with which each attribute (noun/adjective) is masked for ARA (reference code).
        attribute_mask_unit (`str`, *optional*, defaults to `"word"`):
            ``"word"`` masks attribute words independently; ``"phrase"`` masks adjective+noun chunks
            together (the reference's switched-off phrase variant).
        mask_token_id (`int`, *optional*, defaults to 49405):
            Token that replaces masked attributes: IRRA's ``<|mask|>`` slot of the CLIP vocabulary
            (IRRA's tokenizer keeps one merge fewer than CLIP and puts ``<|mask|>`` at 49405, a very
            rare merge in ours), so the pretrained text encoder needs no new embedding row.
        sdm_loss_weight (`float`, *optional*, defaults to 0.0):
            Weight of ``sdm``, the baseline's (`clip_reid`, IRRA's) similarity distribution matching on
            CADA's retrieval embedding (not part of CADA; for ablation rows).
        id_loss_weight (`float`, *optional*, defaults to 0.0):
            Weight of ``id``, the baseline's shared-classifier identity loss on the un-normalised global
            features (needs ``num_ids`` > 0; not part of CADA; for ablation rows). 0 builds no classifier.
        rerank_k (`int`, *optional*, defaults to 16):
            How many first-stage (cosine) candidates `GalleryIndex.search(..., rerank=True)` re-scores
            with `rerank_scores` (16 in the reference's CUHK-PEDES script, 32 ICFG, 128 RSTPReid);
            0 disables re-ranking.

    Inherits every field of [`TIReIDConfig`] (`clip_config`, `image_size`, `temperature`, `num_ids`, ...).
    ``itm`` in ``output.losses`` is ``itm_global + itm_local`` reported for logging: it is not weighted
    again (:meth:`loss_weight` is 0 for it); its parts carry the weights.

    Example:

    ```python
    >>> from tireid_hf.modeling import CADAConfig, CADAModel
    >>> model = CADAModel(CADAConfig(rerank_k=32))
    ```
    """

    model_type = "tireid-cada"
    # the zoo's facts (see TIReIDConfig): ablation rows, sweep knobs, the paper's reported figures
    zoo_ablations = {
        "no local matching": {"itm_local_loss_weight": 0.0},
        "no matching (ATP)": {"itm_global_loss_weight": 0.0, "itm_local_loss_weight": 0.0},
        "no ARA": {"ara_loss_weight": 0.0},
        "none of its additions": {"global_loss_weight": 0.0, "itm_global_loss_weight": 0.0,
                                  "itm_local_loss_weight": 0.0, "ara_loss_weight": 0.0,
                                  "sdm_loss_weight": 1.0, "id_loss_weight": 1.0},
        "no ATP and ARA": {"itm_global_loss_weight": 0.0, "itm_local_loss_weight": 0.0, "ara_loss_weight": 0.0},
        "no ATP and ARA, per-row NDF": {"itm_global_loss_weight": 0.0, "itm_local_loss_weight": 0.0,
                                        "ara_loss_weight": 0.0, "ndf_reduction": "per_row"},
    }
    zoo_contribution = "no ATP and ARA"
    zoo_sweep = ("itm_global_loss_weight", "itm_local_loss_weight")
    zoo_reported = {"backbone": "BLIP, third-party retrain; paper: R1 78.37", "cuhk-pedes": "77.20 / 68.45",
                    "icfg-pedes": "67.38 / 37.81", "rstpreid": "67.70 / 49.95"}

    decoder_layers: int = 4
    decoder_num_heads: int = 8
    decoder_mlp_ratio: float = 4.0
    num_local_parts: int = 2
    global_loss_weight: float = 1.0
    ndf_reduction: str = "reference"
    itm_global_loss_weight: float = 1.0
    itm_local_loss_weight: float = 1.0
    ara_loss_weight: float = 0.1
    attribute_mask_probability: float = 0.4
    attribute_mask_unit: str = "word"
    mask_token_id: int = CLIP_MASK_TOKEN_ID
    sdm_loss_weight: float = 0.0
    id_loss_weight: float = 0.0
    rerank_k: int = 16

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.decoder_layers < 1:
            raise ValueError(f"decoder_layers must be >= 1, got {self.decoder_layers}")
        if self.decoder_num_heads < 1 or self.embed_dim % self.decoder_num_heads:
            raise ValueError(
                f"decoder_num_heads ({self.decoder_num_heads}) must divide the decoder width "
                f"clip_config.projection_dim ({self.embed_dim})"
            )
        if self.num_local_parts < 1:
            raise ValueError(f"num_local_parts must be >= 1, got {self.num_local_parts}")
        if not 0.0 <= self.attribute_mask_probability <= 1.0:
            raise ValueError(f"attribute_mask_probability must lie in [0, 1], got {self.attribute_mask_probability}")
        if self.attribute_mask_unit not in ATTRIBUTE_MASK_UNITS:
            raise ValueError(f"attribute_mask_unit must be one of {ATTRIBUTE_MASK_UNITS}, got {self.attribute_mask_unit!r}")
        vocab_size = self.clip_config.text_config.vocab_size
        if not 0 <= self.mask_token_id < vocab_size:
            raise ValueError(f"mask_token_id must lie in [0, vocab_size={vocab_size}), got {self.mask_token_id}")
        if self.ndf_reduction not in NDF_REDUCTIONS:
            raise ValueError(f"ndf_reduction must be one of {NDF_REDUCTIONS}, got {self.ndf_reduction!r}")
        if self.rerank_k < 0:
            raise ValueError(f"rerank_k must be >= 0, got {self.rerank_k}")

    def loss_weight(self, name: str) -> float:
        """Weight of loss term ``name``; 0 for the summary term ``itm`` (its parts are weighted)."""
        return 0.0 if name in SUMMARY_LOSSES else super().loss_weight(name)


CADAConfig.register_for_auto_class()
