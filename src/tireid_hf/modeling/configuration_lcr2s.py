"""Configuration of LCR²S (Learning Comprehensive Representations with Richer Self, ACM MM 2023). Remote code."""

from __future__ import annotations

from .configuration_tireid import TIReIDConfig

TRAINING_SCHEDULES = ("two_stage", "joint")
RELATION_DISTANCES = ("kl", "frobenius")


class LCR2SConfig(TIReIDConfig):
    r"""LCR²S over the CLIP base: a "richer" teacher (backbone + multi-head attentional fusion of each
    sample with its same-identity support set) distilled into the plain single-input dual encoder
    (the student) that retrieval uses.

    Args:
        support_size (`int`, *optional*, defaults to 3):
            Most support-set members per sample: the other in-batch samples of its identity, in batch
            order (K - 1 with the P x K sampler's K = 4). 0 fuses every sample with itself only
            (the "no support set" ablation).
        use_teacher (`bool`, *optional*, defaults to `True`):
            Build the richer teacher (fusion modules, teacher losses, distillation). `False` trains the
            student alone with `student_align` (+ `student_id`), in the single stage `("student",)`:
            the baseline, as the ablation row "none of its additions".
        share_fusion (`bool`, *optional*, defaults to `False`):
            One fusion module for both modalities instead of one per modality.
        fusion_num_heads (`int`, *optional*, defaults to 8):
            Attention heads of the fusion (the embedding width must divide by it).
        fusion_mlp_ratio (`float`, *optional*, defaults to 4.0):
            Hidden width of the fusion's feed-forward block over the embedding width.
        fusion_dropout (`float`, *optional*, defaults to 0.0):
            Dropout inside the fusion.
        training_schedule (`str`, *optional*, defaults to `"two_stage"`):
            `"two_stage"`: the zoo's choice (nothing published fixes the schedule; no code was released),
            stages `("teacher", "student")`: the teacher is trained, then frozen, and the student
            (initialised from the teacher's backbone) learns from it.
            `"joint"`: one stage `("joint",)` training teacher and student together on one backbone,
            the distillation targets detached.
        stage (`str`, *optional*):
            The current stage, one of the schedule's (`"teacher"`, `"student"` or `"joint"`); defaults
            to the schedule's first. Set by `LCR2SModel.start_stage`, saved in config.json so a
            checkpoint rebuilds the modules of its stage (the frozen teacher exists from `"student"` on).
        relation_distance (`str`, *optional*, defaults to `"kl"`):
            `distill_relation` as a KL divergence between the row-wise softmaxed similarity matrices
            (`"kl"`) or a squared Frobenius distance between the cosine similarity matrices (`"frobenius"`).
        teacher_align_loss_weight (`float`, *optional*, defaults to 1.0):
            SDM over the enriched (teacher) embeddings.
        teacher_id_loss_weight (`float`, *optional*, defaults to 1.0):
            ID loss over the enriched embeddings (needs `num_ids` > 0).
        student_align_loss_weight (`float`, *optional*, defaults to 1.0):
            SDM over the student embeddings.
        student_id_loss_weight (`float`, *optional*, defaults to 1.0):
            ID loss over the student embeddings (needs `num_ids` > 0).
        distill_feature_loss_weight (`float`, *optional*, defaults to 1.0):
            Intra-modal feature distillation, `1 - cos(student, teacher enriched)` per modality.
        distill_relation_loss_weight (`float`, *optional*, defaults to 1.0):
            Inter-modal relation distillation (see `relation_distance`).

    The paper's loss weights are not public (no code was released): every term has weight 1, the
    SDM/ID weights of IRRA. Inherits every field of [`TIReIDConfig`].

    Example:

    ```python
    >>> from tireid_hf.modeling import LCR2SConfig, LCR2SModel
    >>> model = LCR2SModel(LCR2SConfig(num_ids=11003))
    >>> model.training_stages()
    ('teacher', 'student')
    ```
    """

    model_type = "tireid-lcr2s"
    # the zoo's facts (see TIReIDConfig): ablation rows, sweep knobs, the paper's reported figures
    zoo_ablations = {
        # every LCR²S addition off (support-set fusion, teacher losses, both distillations): the student
        # alone with SDM + ID, the baseline's training; one stage instead of two (see `stages`)
        "none of its additions": {"use_teacher": False},
        "no support set": {"support_size": 0},
        "no feature distillation": {"distill_feature_loss_weight": 0.0},
        "no relation distillation": {"distill_relation_loss_weight": 0.0},
    }
    # the paper's contribution, support-set fusion + its distillation, is exactly the teacher
    zoo_contribution = "none of its additions"
    zoo_sweep = ("distill_feature_loss_weight", "distill_relation_loss_weight")
    zoo_reported = {"backbone": "ResNet-50, third-party table", "cuhk-pedes": "67.36 / 59.20",
                    "icfg-pedes": "57.93 / 38.21", "rstpreid": "54.95 / 40.92"}

    support_size: int = 3
    use_teacher: bool = True
    share_fusion: bool = False
    fusion_num_heads: int = 8
    fusion_mlp_ratio: float = 4.0
    fusion_dropout: float = 0.0
    training_schedule: str = "two_stage"
    stage: str | None = None
    relation_distance: str = "kl"
    teacher_align_loss_weight: float = 1.0
    teacher_id_loss_weight: float = 1.0
    student_align_loss_weight: float = 1.0
    student_id_loss_weight: float = 1.0
    distill_feature_loss_weight: float = 1.0
    distill_relation_loss_weight: float = 1.0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.support_size < 0:
            raise ValueError(f"support_size must be >= 0, got {self.support_size}")
        if self.training_schedule not in TRAINING_SCHEDULES:
            raise ValueError(f"training_schedule must be one of {TRAINING_SCHEDULES}, got {self.training_schedule!r}")
        if self.relation_distance not in RELATION_DISTANCES:
            raise ValueError(f"relation_distance must be one of {RELATION_DISTANCES}, got {self.relation_distance!r}")
        if self.embed_dim % self.fusion_num_heads:
            raise ValueError(
                f"fusion_num_heads ({self.fusion_num_heads}) must divide the embedding width "
                f"clip_config.projection_dim ({self.embed_dim})"
            )
        if self.stage is None:
            self.stage = self.stages[0]
        if self.stage not in self.stages:
            raise ValueError(
                f"stage must be one of {self.stages} (training_schedule={self.training_schedule!r}, "
                f"use_teacher={self.use_teacher}), got {self.stage!r}"
            )

    @property
    def stages(self) -> tuple[str, ...]:
        """The training stages, in order: ``("teacher", "student")``, ``("joint",)``, or ``("student",)``
        without a teacher."""
        if not self.use_teacher:
            return ("student",)
        return ("teacher", "student") if self.training_schedule == "two_stage" else ("joint",)

    @property
    def trains_teacher(self) -> bool:
        """Whether the current stage trains the richer teacher (backbone + fusion)."""
        return self.use_teacher and self.stage in ("teacher", "joint")

    @property
    def trains_student(self) -> bool:
        """Whether the current stage trains the student (its own and the distillation losses)."""
        return self.stage in ("student", "joint")


LCR2SConfig.register_for_auto_class()
