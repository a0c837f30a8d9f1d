"""Configuration of `lgur` (LGUR, ACM MM 2022: granularity-unified representations). Remote code."""

from __future__ import annotations

from .configuration_tireid import TIReIDConfig


class LGURConfig(TIReIDConfig):
    r"""LGUR over the shared CLIP base: a Multi-modality Shared Dictionary (MSD) re-expresses image patch
    and text token features (Dictionary-based Granularity Alignment, DGA) and shared learnable
    prototypes decode both modalities into granularity-unified embeddings (PGU).

    Args:
        hidden_size (`int`, *optional*, defaults to `None`):
            Width of the head (dictionary atoms, decoder layers, prototypes). `None` means CLIP's joint
            width (``clip_config.projection_dim``, 512 for ViT-B/16) and no extra projection; another
            value adds one linear map (shared by both modalities) from the joint width to it.
        num_attention_heads (`int`, *optional*, defaults to 8):
            Heads of the dictionary's reconstruction (and guidance) attention, each ``hidden_size /
            num_attention_heads`` wide (64 at 512, as the reference's 6 x 64 at 384).
        mlp_ratio (`float`, *optional*, defaults to 2.0):
            Feed-forward width over `hidden_size` in every decoder layer (reference: 768 at 384).
        use_dictionary (`bool`, *optional*, defaults to `True`):
            Build the MSD and its reconstruction layer. Without it the "dictionary" branch embeds the
            (foreground-weighted) token features themselves, so `rank_text_dict_loss_weight` must be 0.
        num_atoms (`int`, *optional*, defaults to 400):
            Number of dictionary atoms (reference code: 400).
        use_foreground_weighting (`bool`, *optional*, defaults to `True`):
            Weight reconstructed image tokens by a per-patch foreground score ``sigmoid(w^T x + b)``.
        use_cross_modality_guidance (`bool`, *optional*, defaults to `True`):
            In training, embed the images of the guided branch from text-guided image tokens
            (cross-attention from image patches to the paired caption's tokens). Without it that branch
            embeds the plain patch tokens.
        share_guidance_layer (`bool`, *optional*, defaults to `True`):
            The guidance uses the dictionary's reconstruction layer itself (as the reference code does:
            the same module reconstructs from atoms and from text). `False` (or `use_dictionary=False`)
            builds a separate, training-only guidance layer.
        num_prototypes (`int`, *optional*, defaults to 6):
            Shared learnable prototypes (PGU queries). 1 is the "single global query" ablation.
        num_prototype_layers (`int`, *optional*, defaults to 2):
            Decoder layers of the PGU.
        prototype_num_heads (`int`, *optional*, defaults to 6):
            Heads of the PGU cross-attention (reference: 6).
        prototype_head_dim (`int`, *optional*, defaults to 512):
            Width of each PGU attention head, independent of `hidden_size` (reference: 512, an inner
            width of 6 x 512 = 3072 at model width 384).
        prototype_self_attention (`bool`, *optional*, defaults to `False`):
            Self-attention among the prototypes in each PGU layer (DETR-style). The reference decoder
            has cross-attention only; `True` is an ablation option.
        prototype_dim (`int`, *optional*, defaults to 512):
            Output width of each prototype's own projection; the embedding is their concatenation,
            ``num_prototypes * prototype_dim`` wide (3072 by default): see :attr:`embed_dim`.
        ranking_margin (`float`, *optional*, defaults to 0.3):
            Margin of the semi-hard ranking (triplet) losses.
        ranking_hard_fallback (`bool`, *optional*, defaults to `False`):
            Give an anchor without a semi-hard negative a random hard one (ours) instead of dropping it
            (the reference's RankingLoss): see :func:`~.losses.semi_hard_ranking_loss`.
        id_guided_loss_weight (`float`, *optional*, defaults to 1.0):
            ID(v, t): per-prototype identity classification of the guided image / text embeddings.
        rank_guided_loss_weight (`float`, *optional*, defaults to 1.0):
            RANK(v, t).
        id_dict_loss_weight (`float`, *optional*, defaults to 1.0):
            ID(v^d, t^d) of the dictionary-branch (inference) embeddings.
        rank_dict_loss_weight (`float`, *optional*, defaults to 1.0):
            RANK(v^d, t^d).
        rank_text_dict_loss_weight (`float`, *optional*, defaults to 1.0):
            RANK(t, t^d): text embedding against its dictionary reconstruction.
        rank_image_dict_loss_weight (`float`, *optional*, defaults to 1.0):
            RANK(v, v^d): guided image embedding against the dictionary branch.
        sdm_loss_weight (`float`, *optional*, defaults to 0.0):
            IRRA's similarity distribution matching over the (v^d, t^d) similarity matrix: the CLIP-era
            standard, off by default (not part of LGUR).
        id_loss_weight (`float`, *optional*, defaults to 0.0):
            IRRA's ID loss (term ``id``): one classifier shared by both modalities over the whole
            un-normalised retrieval embeddings ``v^d``, ``t^d`` (``embed_dim`` wide), ``(CE_v + CE_t) / 2``,
            as the `clip_reid` baseline computes it. Off by default (not part of LGUR); with
            `sdm_loss_weight` it trains this embedding with the baseline's losses.

    The ID losses need `num_ids` > 0. Inherits every field of [`TIReIDConfig`].

    Example:

    ```python
    >>> from tireid_hf.modeling import LGURConfig, LGURModel
    >>> config = LGURConfig(num_ids=11003)
    >>> config.embed_dim
    3072
    >>> model = LGURModel(config)
    ```
    """

    model_type = "tireid-lgur"
    # the zoo's facts (see TIReIDConfig): ablation rows, sweep knobs, the paper's reported figures
    zoo_ablations = {
        # The paper's contribution without DGA (its dictionary with both of DGA's factors, foreground-centric
        # reconstruction and cross-modality guidance). PGU has no "off" of its own here: its prototypes ARE the
        # retrieval embedding (the split row below trains CLIP's own embedding instead). Without DGA the two
        # branches are one computation (v = v^d = PGU(x), t = t^d = PGU(w)), so RANK(t, t^d) and RANK(v, v^d)
        # would rank an embedding against itself (an intra-modal triplet on self-similarity, no alignment):
        # they go with DGA. ID and RANK of both branches stay at weight 1 (they now coincide).
        "no DGA": {"use_dictionary": False, "use_foreground_weighting": False, "use_cross_modality_guidance": False,
                   "rank_text_dict_loss_weight": 0.0, "rank_image_dict_loss_weight": 0.0},
        # Without the dictionary t^d = PGU(w) = t, so RANK(t, t^d) ranks t against itself: it is dropped
        # because it is degenerate, not as a second change.
        "no dictionary": {"use_dictionary": False, "rank_text_dict_loss_weight": 0.0},
        "no foreground weighting": {"use_foreground_weighting": False},
        "no cross-modality guidance": {"use_cross_modality_guidance": False},
        # One prototype as wide as the synthetic config's six together (6 x 64): only the count changes.
        "one prototype, same width": {"num_prototypes": 1, "prototype_dim": 384},
        # The baseline's training (IRRA's SDM + shared-classifier ID) on LGUR's prototype embedding: every
        # module and loss LGUR adds is off, the modules that define the embedding (prototype decoder and
        # part projections) stay.
        "none of its additions": {
            "use_dictionary": False, "use_foreground_weighting": False, "use_cross_modality_guidance": False,
            "id_guided_loss_weight": 0.0, "rank_guided_loss_weight": 0.0, "id_dict_loss_weight": 0.0,
            "rank_dict_loss_weight": 0.0, "rank_text_dict_loss_weight": 0.0, "rank_image_dict_loss_weight": 0.0,
            "sdm_loss_weight": 1.0, "id_loss_weight": 1.0,
        },
        # LGUR's loss functions on CLIP's global embedding: a `clip_reid` run ("method") with SDM off, the
        # semi-hard ranking loss (sum over anchors, both directions, margin 0.3) and the ID loss at weight 2,
        # since LGUR's ID with one prototype is CE_v + CE_t and clip_reid's `id` is (CE_v + CE_t) / 2.
        "its losses on CLIP's embedding": {"method": "clip_reid", "sdm_loss_weight": 0.0, "id_loss_weight": 2.0,
                                           "ranking_loss_weight": 1.0},
    }
    zoo_contribution = "no DGA"
    zoo_sweep = ("id_dict_loss_weight", "rank_dict_loss_weight", "rank_text_dict_loss_weight",
                 "rank_image_dict_loss_weight")
    zoo_reported = {"backbone": "DeiT-Small", "cuhk-pedes": "65.25 / —", "icfg-pedes": "59.02 / —"}

    hidden_size: int | None = None
    num_attention_heads: int = 8
    mlp_ratio: float = 2.0
    use_dictionary: bool = True
    num_atoms: int = 400
    use_foreground_weighting: bool = True
    use_cross_modality_guidance: bool = True
    share_guidance_layer: bool = True
    num_prototypes: int = 6
    num_prototype_layers: int = 2
    prototype_num_heads: int = 6
    prototype_head_dim: int = 512
    prototype_self_attention: bool = False
    prototype_dim: int = 512
    ranking_margin: float = 0.3
    ranking_hard_fallback: bool = False
    id_guided_loss_weight: float = 1.0
    rank_guided_loss_weight: float = 1.0
    id_dict_loss_weight: float = 1.0
    rank_dict_loss_weight: float = 1.0
    rank_text_dict_loss_weight: float = 1.0
    rank_image_dict_loss_weight: float = 1.0
    sdm_loss_weight: float = 0.0
    id_loss_weight: float = 0.0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.hidden_size is None:
            self.hidden_size = self.clip_config.projection_dim
        for name in ("hidden_size", "num_attention_heads", "num_atoms", "num_prototypes", "num_prototype_layers", "prototype_dim",
                     "prototype_num_heads", "prototype_head_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads ({self.num_attention_heads})"
            )
        if not self.ranking_margin > 0:
            raise ValueError(f"ranking_margin must be > 0, got {self.ranking_margin}")
        self._refuse_degenerate_terms()

    def _refuse_degenerate_terms(self):
        """A branch-vs-branch ranking term whose two branches are the same computation is refused."""
        if not self.use_dictionary and self.rank_text_dict_loss_weight != 0:
            raise ValueError(
                "use_dictionary=False makes t^d the same as t: set rank_text_dict_loss_weight to 0 "
                f"(got {self.rank_text_dict_loss_weight})"
            )
        image_branches_differ = self.use_dictionary or self.use_foreground_weighting or self.use_cross_modality_guidance
        if not image_branches_differ and self.rank_image_dict_loss_weight != 0:
            raise ValueError(
                "without dictionary, foreground weighting and guidance v^d is the same as v: set "
                f"rank_image_dict_loss_weight to 0 (got {self.rank_image_dict_loss_weight})"
            )

    @property
    def embed_dim(self) -> int:
        """Width of the retrieval embeddings: ``num_prototypes * prototype_dim`` (the concatenation)."""
        return self.num_prototypes * self.prototype_dim


LGURConfig.register_for_auto_class()
