"""LCR²S: a "richer" teacher fusing each sample with its same-identity support set, distilled into the
single-input dual encoder used at inference (Learning Comprehensive Representations with Richer Self,
ACM MM 2023). Remote code."""

from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn.functional as F
from torch import nn

from .base import PairFeatures, TIReIDPreTrainedModel
from .configuration_lcr2s import LCR2SConfig
from .layers import DecoderLayer
from .losses import feature_distillation_loss, relation_frobenius_loss, relation_kl_loss


def support_set_indices(pids: torch.Tensor, support_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The in-batch support set of every sample: the OTHER samples of its identity, the first
    ``support_size`` of them in batch order.

    Args:
        pids: [N] identities.
        support_size: most members per sample.
    Returns:
        index: [N, S] batch positions of the members, ``S = min(support_size, N - 1)`` (0 for N = 1).
        padding: [N, S] bool, True where sample i has fewer than S members (the index there is arbitrary).
    """
    batch = pids.shape[0]
    positions = torch.arange(batch, device=pids.device)
    member = (pids.view(-1, 1) == pids.view(1, -1)) & (positions.view(-1, 1) != positions.view(1, -1))
    width = min(support_size, batch - 1)
    # members first, each group in batch order: sort by (not member, position)
    order = torch.argsort((~member).long() * batch + positions.view(1, -1), dim=1)[:, :width]
    return order, ~member.gather(1, order)


def fuse_with_support_set(
    fusion: DecoderLayer, features: torch.Tensor, index: torch.Tensor, padding: torch.Tensor
) -> torch.Tensor:
    """Multi-head attentional fusion of each sample with its support set, on global embeddings::

        memory_i = [x_i, x_index[i, 0], ..., x_index[i, S-1]]          (padded members ignored as keys)
        e_i = x_i + MHA(LN(x_i), LN_m(memory_i)); e_i = e_i + MLP(LN(e_i))   (one DecoderLayer)

    Args:
        fusion: a cross-attention-only :class:`~.layers.DecoderLayer` of the embedding width.
        features: [N, D] global embeddings of one modality.
        index, padding: [N, S] from :func:`support_set_indices`.
    Returns: [N, D] enriched embeddings.
    """
    memory = torch.cat([features.unsqueeze(1), features[index]], dim=1)
    memory_padding = torch.cat([padding.new_zeros(padding.shape[0], 1), padding], dim=1)
    return fusion(features.unsqueeze(1), memory, memory_padding_mask=memory_padding)[:, 0]


def cosine_similarity(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """[N, N] ``cos(t_i, v_j)``, text rows x image columns, from [N, D] features of each modality."""
    return F.normalize(text_features, dim=-1) @ F.normalize(image_features, dim=-1).t()


class LCR2SModel(TIReIDPreTrainedModel):
    """LCR²S over the CLIP base: a teacher (backbone + MHAF) fuses each sample with its support set;
    the student, ``self.clip`` alone, distils it and is the inference path (``export_for_inference()``
    drops the teacher, MHAF and the classifiers).

    * Support set of sample i: the other in-batch samples of its identity, at most ``support_size``,
      first in batch order (:func:`support_set_indices`). MHAF: :func:`fuse_with_support_set` on global
      embeddings, one layer per modality unless ``share_fusion``.
    * Losses: ``teacher_align`` / ``student_align`` = SDM over the enriched / student embeddings,
      ``teacher_id`` / ``student_id`` their ID losses; ``distill_feature`` = image + text
      :func:`~.losses.feature_distillation_loss`; ``distill_relation`` = :func:`~.losses.relation_kl_loss`
      of the ``cos / tau`` matrices or :func:`~.losses.relation_frobenius_loss` of the cosines
      (``relation_distance``). Distillation targets (the enriched embeddings) are detached.
    * Stages: ``"teacher"`` (teacher terms), then ``"student"`` (student + distillation terms against a
      frozen copy, see :meth:`start_stage`); or ``"joint"`` (all six, one backbone); ``use_teacher=False``:
      ``"student"`` alone, without distillation. ``config.stage`` records the stage.
    """

    config_class = LCR2SConfig
    # the student's backbone and the frozen copy the student stage distils from
    backbone_modules = ("clip", "teacher_clip")

    def __init__(self, config: LCR2SConfig):
        super().__init__(config)
        training = not config.inference_only
        self.fusion = self._build_fusion() if training and config.use_teacher else None
        self.teacher_clip = None
        if training and config.use_teacher and config.stage == "student":
            self.teacher_clip = copy.deepcopy(self.clip)
            self._freeze_teacher()
        self.teacher_id_classifier = (
            self.build_id_classifier(config.embed_dim, "teacher_id") if config.trains_teacher else None
        )
        self.student_id_classifier = (
            self.build_id_classifier(config.embed_dim, "student_id") if config.trains_student else None
        )
        self.post_init()

    def _build_fusion(self) -> nn.ModuleDict:
        config = self.config
        names = ("shared",) if config.share_fusion else ("image", "text")
        return nn.ModuleDict({
            name: DecoderLayer(config.embed_dim, config.fusion_num_heads, self_attention=False, cross_attention=True,
                               mlp_ratio=config.fusion_mlp_ratio, dropout=config.fusion_dropout)
            for name in names
        })

    def _fusion_of(self, modality: str) -> DecoderLayer:
        return self.fusion["shared" if self.config.share_fusion else modality]

    # ----------------------------------------------------------------------------- stages
    def training_stages(self) -> tuple[str, ...]:
        """``("teacher", "student")`` (two-stage), ``("joint",)``, or ``("student",)`` without a teacher."""
        return self.config.stages

    def start_stage(self, stage: str) -> None:
        """Switch to ``stage``. Starting the current stage again changes nothing; going back raises
        ``ValueError``. ``"teacher"`` -> ``"student"`` copies ``self.clip`` into a frozen, eval-mode
        ``teacher_clip``, freezes MHAF, drops the teacher's classifier and builds a fresh
        ``student_id_classifier``; ``self.clip`` trains on as the student."""
        super().start_stage(stage)
        stages = self.training_stages()
        if stages.index(stage) < stages.index(self.config.stage):
            raise ValueError(
                f"start_stage: the model is already in stage {self.config.stage!r}; cannot go back to {stage!r}"
            )
        if stage == self.config.stage:
            return
        reference = next(self.clip.parameters())
        self.config.stage = stage
        self.teacher_clip = copy.deepcopy(self.clip)
        self._freeze_teacher()
        self.teacher_id_classifier = None
        classifier = self.build_id_classifier(self.config.embed_dim, "student_id")
        if classifier is not None:
            self._init_weights(classifier)
            classifier.to(device=reference.device, dtype=reference.dtype)
        self.student_id_classifier = classifier
        self.train(self.training)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """The base ``from_pretrained``, then the teacher of a student-stage checkpoint frozen again
        (loading replaces the parameters, which forgets ``requires_grad``)."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if model.teacher_clip is not None:
            model._freeze_teacher()
        return loaded

    def _freeze_teacher(self) -> None:
        for module in (self.teacher_clip, self.fusion):
            module.requires_grad_(False)
            for parameter in module.parameters():
                parameter.grad = None

    def train(self, mode: bool = True):
        """``nn.Module.train``, keeping the frozen teacher (student stage) in eval mode."""
        super().train(mode)
        if self.teacher_clip is not None:
            self.teacher_clip.eval()
            self.fusion.eval()
        return self

    @contextlib.contextmanager
    def _encoding_with(self, backbone: nn.Module):
        """Run the shared ``encode_image``/``encode_text`` with ``backbone`` in place of ``self.clip``."""
        student = self.clip
        self.clip = backbone
        try:
            yield
        finally:
            self.clip = student

    # ----------------------------------------------------------------------------- forward
    def compute_losses(self, features: PairFeatures, pixel_values, input_ids, attention_mask, pids,
                       **batch_inputs) -> dict[str, torch.Tensor]:
        """The stage's terms (see the class docstring); ``pids`` also define the support sets. The
        student's features are the inference path's (``forward``'s embeddings)."""
        image_features, text_features = features.image_features, features.text_features
        teacher = None
        if self._needs_teacher():
            teacher = self._teacher_embeddings(pixel_values, input_ids, attention_mask, pids, image_features, text_features)
        losses = {}
        if self.config.trains_teacher:
            losses.update(self._teacher_losses(*teacher, pids))
        if self.config.trains_student:
            losses.update(self._student_losses(image_features, text_features, features.logits_per_text, pids, teacher))
        return losses

    def _needs_teacher(self) -> bool:
        config = self.config
        distills = self.wants_loss("distill_feature") or self.wants_loss("distill_relation")
        return config.use_teacher and (config.trains_teacher or (config.trains_student and distills))

    def _teacher_embeddings(self, pixel_values, input_ids, attention_mask, pids, image_features, text_features):
        """Enriched (image, text) embeddings [N, D] each. In the student stage the frozen teacher encodes
        the batch again, without gradients; otherwise the teacher shares the backbone pass."""
        frozen = self.teacher_clip is not None
        with torch.no_grad() if frozen else contextlib.nullcontext():
            if frozen:
                with self._encoding_with(self.teacher_clip):
                    image_features = self.encode_image(pixel_values).global_features
                    text_features = self.encode_text(input_ids, attention_mask).global_features
            index, padding = support_set_indices(pids, self.config.support_size)
            return (fuse_with_support_set(self._fusion_of("image"), image_features, index, padding),
                    fuse_with_support_set(self._fusion_of("text"), text_features, index, padding))

    def _teacher_losses(self, enriched_image, enriched_text, pids):
        logits = self.embed_pair(enriched_image, enriched_text)[2]
        return self.alignment_losses(enriched_image, enriched_text, logits, pids, self.teacher_id_classifier,
                                     "teacher_align", "teacher_id")

    def _student_losses(self, image_features, text_features, logits_per_text, pids, teacher):
        losses = self.alignment_losses(image_features, text_features, logits_per_text, pids,
                                       self.student_id_classifier, "student_align", "student_id")
        if teacher is None:
            return losses
        enriched_image, enriched_text = (embedding.detach() for embedding in teacher)
        if self.wants_loss("distill_feature"):
            losses["distill_feature"] = (feature_distillation_loss(image_features, enriched_image)
                                         + feature_distillation_loss(text_features, enriched_text))
        if self.wants_loss("distill_relation"):
            student_similarity = cosine_similarity(image_features, text_features)
            teacher_similarity = cosine_similarity(enriched_image, enriched_text)
            if self.config.relation_distance == "kl":
                losses["distill_relation"] = relation_kl_loss(self.logit_scale * student_similarity,
                                                              self.logit_scale * teacher_similarity)
            else:
                losses["distill_relation"] = relation_frobenius_loss(student_similarity, teacher_similarity)
        return losses


LCR2SModel.register_for_auto_class("AutoModel")
