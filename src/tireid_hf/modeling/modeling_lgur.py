"""`lgur`: LGUR (ACM MM 2022) over the shared CLIP base: a Multi-modality Shared Dictionary
re-expresses both modalities' token features (DGA) and shared prototypes decode them into
granularity-unified embeddings (PGU). Remote code."""

from __future__ import annotations

import torch
from torch import nn
from transformers import initialization as init

from .base import PairFeatures, TIReIDPreTrainedModel
from .configuration_lgur import LGURConfig
from .layers import DecoderLayer, IdentityClassifier
from .losses import semi_hard_ranking_loss

# loss terms, by the branches they need: the guided image branch (v) and the plain text branch (t)
GUIDED_IMAGE_TERMS = ("id_guided", "rank_guided", "rank_image_dict")
PLAIN_TEXT_TERMS = ("id_guided", "rank_guided", "rank_text_dict")
ID_TERMS = ("id_guided", "id_dict")


class SharedDictionary(nn.Module):
    """Multi-modality Shared Dictionary (MSD) and its reconstruction layer (DGA).

    ``atoms`` [num_atoms, width] are shared by both modalities; token features are re-expressed with
    them by one pre-norm cross-attention layer (tokens = queries, atoms = keys/values, then MLP,
    residuals: a :class:`~.layers.DecoderLayer` without self-attention)::

        reconstruct(x) = x' + MLP(LN(x')),   x' = x + CrossAttn(LN(x), LN_m(atoms))
    """

    def __init__(self, num_atoms: int, width: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.atoms = nn.Parameter(torch.empty(num_atoms, width))
        self.reconstruction = DecoderLayer(width, num_heads, self_attention=False, cross_attention=True, mlp_ratio=mlp_ratio)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """[N, L, width] token features -> [N, L, width] dictionary-reconstructed tokens."""
        atoms = self.atoms.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        return self.reconstruction(tokens, atoms)


class PrototypeUnification(nn.Module):
    """Prototype-based Granularity Unification (PGU).

    ``prototypes`` [P, width], shared by both modalities, are the queries of a stack of decoder layers
    over one sample's token features (padding ignored): cross-attention (``num_heads`` heads of
    ``head_dim``, the reference's 6 x 512 at width 384) and a feed-forward block, and self-attention
    among the prototypes only when ``self_attention`` (not in the reference; an ablation option).
    Prototype k's output gets its own projection ``W_k`` [width -> out_dim] (no bias, Kaiming-normal
    fan-out like the reference's 1x1 convolutions)::

        h = Decoder(prototypes, tokens)          [N, P, width]
        parts[:, k] = h[:, k] W_k^T              [N, P, out_dim]

    The retrieval embedding is ``parts.flatten(1)`` [N, P * out_dim].
    """

    def __init__(self, num_prototypes: int, width: int, num_layers: int, num_heads: int, head_dim: int,
                 mlp_ratio: float, self_attention: bool, out_dim: int):
        super().__init__()
        self.prototypes = nn.Parameter(torch.empty(num_prototypes, width))
        self.layers = nn.ModuleList(
            DecoderLayer(width, num_heads, self_attention=self_attention, cross_attention=True, mlp_ratio=mlp_ratio,
                         head_dim=head_dim)
            for _ in range(num_layers)
        )
        self.projections = nn.ModuleList(nn.Linear(width, out_dim, bias=False) for _ in range(num_prototypes))

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens [N, L, width], padding_mask [N, L] (True = padding) -> parts [N, P, out_dim]."""
        hidden = self.prototypes.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        for layer in self.layers:
            hidden = layer(hidden, tokens, memory_padding_mask=padding_mask)
        return torch.stack([projection(hidden[:, k]) for k, projection in enumerate(self.projections)], dim=1)


class LGURModel(TIReIDPreTrainedModel):
    """LGUR head over CLIP's projected token features (image: the patch tokens, class token excluded;
    text: every token, padding masked), optionally mapped to ``hidden_size`` by one shared linear layer.

    Branches (``fg(x) = sigmoid(w^T x + b)`` per image patch, computed on the patch feature itself)::

        dictionary (inference):  v^d = PGU(fg(x) * MSD(x))              t^d = PGU(MSD(w), text padding masked)
        guided (training):       v   = PGU(fg(x) * G(x, w))             t   = PGU(w)
                                 G = cross-attention layer, image patches x as queries, the paired
                                 caption's tokens w as memory (padding masked)

    ``G`` is the dictionary's reconstruction layer itself (``share_guidance_layer``, as in the reference
    code) or a separate training-only layer. Without guidance ``v = PGU(x)`` (the reference's path when
    no caption is fused). Retrieval embeds images and texts independently: ``normalize(v^d)`` and
    ``normalize(t^d)`` (the concatenation of the prototype parts, 6 x 512 = 3072-d by default).

    Losses (``output.losses``, unweighted; RANK = :func:`~.losses.semi_hard_ranking_loss` on the
    concatenated embeddings, margin ``ranking_margin``: a random semi-hard negative in training mode,
    the expectation over that draw in evaluation mode)::

        id_guided = ID(v, t)        rank_guided = RANK(v, t)
        id_dict = ID(v^d, t^d)      rank_dict = RANK(v^d, t^d)
        rank_text_dict = RANK(t, t^d)        rank_image_dict = RANK(v, v^d)
        sdm = SDM(t^d @ v^d^T / tau)         id = (CE(C v^d) + CE(C t^d)) / 2      (optional, weight 0 by default)

    ID: prototype k has its own classifier ``C_k``, shared by both modalities and both branches (as the
    reference), over its un-normalised part, the two modalities' cross-entropies (each a mean over the
    batch) SUMMED and averaged over the prototypes, as the reference's ``Id_Loss`` and ``calculate_part_id``::

        ID(a, b) = 1/P sum_k (CE(C_k a_k) + CE(C_k b_k))

    ``sdm`` and ``id`` are the `clip_reid` baseline's pair (:meth:`alignment_losses`) on the whole
    retrieval embeddings: ``id`` has one classifier ``C`` [embed_dim -> num_ids], shared by both modalities.

    Initialisation: part projections ``W_k`` Kaiming-normal fan-out (``std = sqrt(2 / out_dim)``) and ID
    classifiers N(0, 0.001), zero bias, as the reference; atoms and prototypes N(0, 0.02). Only ``W_k``
    and the ID classifiers train at ``head_learning_rate_multiplier`` (``head_multiplier_modules``, as
    the reference); the dictionary, foreground scorer, guidance and prototype decoder at the backbone's
    rate. Decoder layers are the zoo's pre-norm :class:`~.layers.DecoderLayer`.
    """

    config_class = LGURConfig
    head_multiplier_modules = ("unification.projections", "id_classifiers", "id_classifier")

    def __init__(self, config: LGURConfig):
        super().__init__(config)
        width, joint_width = config.hidden_size, config.clip_config.projection_dim
        self.token_projection = nn.Linear(joint_width, width) if width != joint_width else None
        self.dictionary = (
            SharedDictionary(config.num_atoms, width, config.num_attention_heads, config.mlp_ratio)
            if config.use_dictionary else None
        )
        self.foreground = nn.Linear(width, 1) if config.use_foreground_weighting else None
        needs_own_guidance = not (config.share_guidance_layer and config.use_dictionary)
        needs_guidance = config.use_cross_modality_guidance and any(map(self.wants_loss, GUIDED_IMAGE_TERMS))
        self.guidance = (
            DecoderLayer(width, config.num_attention_heads, self_attention=False, cross_attention=True, mlp_ratio=config.mlp_ratio)
            if needs_guidance and needs_own_guidance else None
        )
        self.unification = PrototypeUnification(
            config.num_prototypes, width, config.num_prototype_layers, config.prototype_num_heads,
            config.prototype_head_dim, config.mlp_ratio, config.prototype_self_attention, config.prototype_dim,
        )
        self.id_classifiers = (
            nn.ModuleList(IdentityClassifier(config.prototype_dim, config.num_ids) for _ in range(config.num_prototypes))
            if config.num_ids > 0 and any(map(self.wants_loss, ID_TERMS)) else None
        )
        self.id_classifier = self.build_id_classifier(config.embed_dim)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        """The base's initialisation, plus atoms and prototypes N(0, 0.02) and the part projections
        Kaiming-normal fan-out (the reference's ``weights_init_kaiming`` of its 1x1 convolutions)."""
        super()._init_weights(module)
        if isinstance(module, SharedDictionary):
            init.normal_(module.atoms, mean=0.0, std=0.02)
        elif isinstance(module, PrototypeUnification):
            init.normal_(module.prototypes, mean=0.0, std=0.02)
            for projection in module.projections:
                init.kaiming_normal_(projection.weight, mode="fan_out", nonlinearity="relu")

    # ----------------------------------------------------------------------------- token features
    def _to_head_width(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens if self.token_projection is None else self.token_projection(tokens)

    def image_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] -> patch token features [N, rows * cols, hidden_size] (class token dropped)."""
        return self._to_head_width(self.encode_image(pixel_values, return_tokens=True).token_features[:, 1:])

    def text_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[N, L] -> token features [N, L, hidden_size] and the padding mask [N, L] (True = padding) or None."""
        tokens = self._to_head_width(self.encode_text(input_ids, attention_mask, return_tokens=True).token_features)
        return tokens, (None if attention_mask is None else attention_mask == 0)

    def _foreground_weighted(self, patches: torch.Tensor, reconstructed: torch.Tensor) -> torch.Tensor:
        """``sigmoid(w^T x_p + b) * reconstructed_p`` per patch p (unchanged without foreground weighting)."""
        return reconstructed if self.foreground is None else reconstructed * torch.sigmoid(self.foreground(patches))

    def dictionary_image_tokens(self, patches: torch.Tensor) -> torch.Tensor:
        """``fg(x) * MSD(x)`` [N, P, width] (``MSD`` = identity without the dictionary)."""
        return self._foreground_weighted(patches, patches if self.dictionary is None else self.dictionary(patches))

    def dictionary_text_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """``MSD(w)`` [N, L, width] (identity without the dictionary)."""
        return tokens if self.dictionary is None else self.dictionary(tokens)

    def guided_image_tokens(self, patches: torch.Tensor, text: torch.Tensor, text_padding: torch.Tensor | None) -> torch.Tensor:
        """``fg(x) * G(x, w)`` [N, P, width]; the plain patches ``x`` without cross-modality guidance."""
        if not self.config.use_cross_modality_guidance:
            return patches
        layer = self.guidance if self.guidance is not None else self.dictionary.reconstruction
        return self._foreground_weighted(patches, layer(patches, text, memory_padding_mask=text_padding))

    # ----------------------------------------------------------------------------- retrieval API
    def image_retrieval_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``v^d`` [N, num_prototypes * prototype_dim]: no text needed."""
        return self.unification(self.dictionary_image_tokens(self.image_tokens(pixel_values))).flatten(1)

    def text_retrieval_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """``t^d`` [N, num_prototypes * prototype_dim]."""
        tokens, padding = self.text_tokens(input_ids, attention_mask)
        return self.unification(self.dictionary_text_tokens(tokens), padding).flatten(1)

    # ----------------------------------------------------------------------------- training
    def encode_batch(self, pixel_values, input_ids, attention_mask, with_losses) -> PairFeatures:
        """The dictionary branch ``v^d``, ``t^d`` (the inference path), keeping the head-width tokens and
        the unflattened parts for the losses."""
        patches = self.image_tokens(pixel_values)
        text, text_padding = self.text_tokens(input_ids, attention_mask)
        image_parts_dict = self.unification(self.dictionary_image_tokens(patches))
        text_parts_dict = self.unification(self.dictionary_text_tokens(text), text_padding)
        return PairFeatures(image_parts_dict.flatten(1), text_parts_dict.flatten(1), intermediates={
            "patches": patches, "text": text, "text_padding": text_padding,
            "image_parts_dict": image_parts_dict, "text_parts_dict": text_parts_dict,
        })

    def compute_losses(self, features: PairFeatures, pixel_values, input_ids, attention_mask, pids,
                       **batch_inputs) -> dict[str, torch.Tensor]:
        """The switched-on terms of the class docstring; the guided branch runs only when one needs it."""
        cache = features.intermediates
        patches, text, text_padding = cache["patches"], cache["text"], cache["text_padding"]
        image_parts_dict, text_parts_dict = cache["image_parts_dict"], cache["text_parts_dict"]
        image_parts = (self.unification(self.guided_image_tokens(patches, text, text_padding))
                       if any(map(self.wants_loss, GUIDED_IMAGE_TERMS)) else None)
        text_parts = self.unification(text, text_padding) if any(map(self.wants_loss, PLAIN_TEXT_TERMS)) else None
        terms = {
            "id_guided": lambda: self.prototype_identity_loss(image_parts, text_parts, pids, "id_guided"),
            "rank_guided": lambda: self.ranking_loss(image_parts, text_parts, pids),
            "id_dict": lambda: self.prototype_identity_loss(image_parts_dict, text_parts_dict, pids, "id_dict"),
            "rank_dict": lambda: self.ranking_loss(image_parts_dict, text_parts_dict, pids),
            "rank_text_dict": lambda: self.ranking_loss(text_parts, text_parts_dict, pids),
            "rank_image_dict": lambda: self.ranking_loss(image_parts, image_parts_dict, pids),
        }
        losses = {name: term() for name, term in terms.items() if self.wants_loss(name)}
        return losses | self.alignment_losses(features.image_features, features.text_features, features.logits_per_text,
                                              pids, self.id_classifier)

    def ranking_loss(self, first_parts: torch.Tensor, second_parts: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        """RANK over the concatenated parts [N, P, out_dim] (normalised as a whole, not per prototype): a random
        semi-hard negative in training mode, its expectation in evaluation mode (deterministic, like dropout off)."""
        return semi_hard_ranking_loss(first_parts.flatten(1), second_parts.flatten(1), pids, self.config.ranking_margin,
                                      expected=not self.training, hard_fallback=self.config.ranking_hard_fallback)

    def prototype_identity_loss(self, image_parts: torch.Tensor, text_parts: torch.Tensor, pids: torch.Tensor,
                                loss_name: str) -> torch.Tensor:
        """``1/P sum_k (CE(C_k image_parts[:, k]) + CE(C_k text_parts[:, k]))`` over parts [N, P, out_dim]:
        twice the shared-classifier :meth:`identity_loss` (the mean of the two modalities) per prototype, the
        reference's sum. An error when ``num_ids`` is 0."""
        classifiers = self.id_classifiers if self.id_classifiers is not None else [None] * self.config.num_prototypes
        per_prototype = [
            2 * self.identity_loss(classifier, image_parts[:, k], text_parts[:, k], pids, loss_name)
            for k, classifier in enumerate(classifiers)
        ]
        return torch.stack(per_prototype).mean()


LGURModel.register_for_auto_class("AutoModel")
