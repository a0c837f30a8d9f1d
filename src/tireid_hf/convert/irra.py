"""IRRA's checkpoint layout (anosorae/IRRA, and the methods that keep it) -> a zoo model.

IRRA saves ``{"model": state_dict, "optimizer": ..., ...}`` where the state dict holds OpenAI's CLIP
names under ``base_model.`` (:mod:`.openai_layout`) with a RECTANGULAR image position table
``[1 + rows * cols, W]`` (resized once from the square table at the start of training, then
fine-tuned), plus the method's heads at the top level. The position table is taken as stored.

Variants (what differs is which heads exist and which zoo method receives the CLIP weights):

* ``irra``: ``classifier`` (the ID head) becomes the `clip_reid` ID classifier; the MLM branch
  (``cross_attn``, ``cross_modal_transformer``, ``ln_pre_t``, ``ln_pre_i``, ``ln_post``,
  ``mlm_head``) has no counterpart in the zoo and is dropped, listed.
* ``rde`` (QinYang79/RDE): as IRRA; its TSE heads (``visul_emb_layer``, ``texual_emb_layer``) are
  dropped, listed: the converted model gives RDE's BGE embeddings (RDE reports BGE + TSE).
* ``sen`` (Delong-liu-bupt/SEN, the UIT code) -> ``uit``, inference-only: SEN's restoration decoder
  does not map onto the zoo's (no residual around its text cross-attention, no text projection,
  QuickGELU CLIP blocks), so it is dropped with the MLM, fusion and ID heads, listed. SEN retrieves
  with CLIP's global features, which the converted model reproduces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..modeling import METHODS
from .checkpoint_files import ConversionError
from .openai_layout import clip_config_from_openai, load_checked, openai_to_transformers

PREFIX = "base_model."
_MLM = ("cross_attn.", "cross_modal_transformer.", "ln_pre_t.", "ln_pre_i.", "ln_post.", "mlm_head.")


@dataclass(frozen=True)
class Variant:
    """A reference method keeping IRRA's layout: the zoo method it becomes and its heads by group
    (name prefixes) that the zoo has no counterpart for."""

    method: str
    dropped_heads: dict[str, tuple[str, ...]]
    keep_classifier: bool = True
    note: str = ""
    config_overrides: dict = field(default_factory=dict)


VARIANTS = {
    "irra": Variant("clip_reid", {"mlm (implicit relation reasoning)": _MLM}),
    "rde": Variant("clip_reid", {"tse (token selection embedding)": ("visul_emb_layer.", "texual_emb_layer."),
                                 "mlm": _MLM},
                   note="RDE ranks by (BGE + TSE) / 2; the converted model gives the BGE (CLIP global) embeddings"),
    "sen": Variant(
        "uit",
        {"mlm": ("cross_attn_mlm.", "cross_modal_transformer_mlm.", "ln_pre_t.", "ln_pre_i.", "ln_post.", "mlm_head."),
         "restoration decoder (does not map onto the zoo's)": (
             "decoder_embed.", "mask_token", "decoder_pos_embed", "cross_attn_TextImage.", "cross_attn_Text.",
             "cross_attn_Image.", "cross_modal_transformer_mae.", "norm_1.", "norm_2.", "norm_3.", "norm_4.",
             "norm_5.", "norm_6.", "norm_7.", "decoder_pred."),
         "fusion head": ("fuse_head.", "norm_image.", "norm_text.")},
        keep_classifier=False,
        note="converted inference-only: retrieval uses CLIP's global features, as SEN's evaluation does",
        config_overrides={"inference_only": True},
    ),
}
CLASSIFIER = ("classifier.weight", "classifier.bias")


@dataclass
class Conversion:
    """A converted model and what the conversion left out (group -> tensor names), for the report."""

    model: torch.nn.Module
    dropped: dict[str, list[str]]
    note: str = ""


def _split_heads(state: dict[str, torch.Tensor], variant: Variant, source: str):
    """(CLIP tensors without the prefix, classifier tensors, dropped names by group); raises on any
    top-level name that is neither CLIP nor a known head of `variant`."""
    clip = {name[len(PREFIX):]: value for name, value in state.items() if name.startswith(PREFIX)}
    classifier, dropped, unknown = {}, {}, []
    for name in sorted(set(state) - {PREFIX + key for key in clip}):
        group = next((label for label, prefixes in variant.dropped_heads.items() if name.startswith(prefixes)), None)
        if name in CLASSIFIER:
            if variant.keep_classifier:
                classifier[name] = state[name]
            else:
                dropped.setdefault("id classifier (not needed for retrieval)", []).append(name)
        elif group is not None:
            dropped.setdefault(group, []).append(name)
        else:
            unknown.append(name)
    if unknown:
        raise ConversionError(f"{source}: {len(unknown)} tensor(s) that are neither CLIP ({PREFIX}*) nor a known head of "
                              f"this layout: {', '.join(unknown[:12])}" + (" ..." if len(unknown) > 12 else ""))
    return clip, classifier, dropped


def convert_irra_state(state: dict[str, torch.Tensor], *, variant: str = "irra", image_size=(384, 128),
                       source: str = "checkpoint") -> Conversion:
    """An IRRA-layout state dict -> the zoo model of `variant` (float32), checked tensor by tensor.

    Args:
        state: the checkpoint's ``model`` state dict (see :func:`.checkpoint_files.read_state_dict`).
        variant: a key of `VARIANTS` (``irra``, ``rde``, ``sen``).
        image_size: (height, width) the checkpoint was trained at (IRRA's ``img_size``); its patch
            grid must hold exactly the stored position table's entries.
    """
    if variant not in VARIANTS:
        raise ConversionError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    spec = VARIANTS[variant]
    if not any(name.startswith(PREFIX) for name in state):
        hint = (" (it looks like an OpenAI CLIP file: use `tireid convert openai-clip`)" if "visual.proj" in state
                else " (a tireid/transformers checkpoint already loads with AutoModel)" if any(
                    name.startswith(("clip.", "vision_model.", "text_model.")) for name in state) else "")
        raise ConversionError(f"{source}: no {PREFIX}* tensors: not an IRRA-layout checkpoint{hint}")
    clip_state, classifier, dropped = _split_heads(state, spec, source)
    height, width = (int(side) for side in image_size)
    clip_config = clip_config_from_openai(clip_state, source, vision_image_size=max(height, width))
    patch = clip_config.vision_config.patch_size
    stored = clip_state["visual.positional_embedding"].shape[0] - 1
    if height % patch or width % patch or (height // patch) * (width // patch) != stored:
        raise ConversionError(
            f"{source}: the image position table holds {stored} patch positions, but image_size {height}x{width} at "
            f"patch {patch} makes a {height / patch:g}x{width / patch:g} grid; pass the checkpoint's img_size "
            "(--image-size H W, IRRA's configs.yaml). Checkpoints trained with stride_size < patch size "
            "(overlapping patches) cannot be represented by the zoo's models.")
    config_class, model_class = METHODS[spec.method]
    num_ids = classifier["classifier.weight"].shape[0] if classifier else 0
    config = config_class(clip_config=clip_config.to_dict(), image_size=(height, width), num_ids=num_ids,
                          **spec.config_overrides)
    model = model_class(config)
    converted = {f"clip.{name}": value for name, value in openai_to_transformers(clip_state, source).items()}
    converted.update({name.replace("classifier.", "id_classifier."): value.float() for name, value in classifier.items()})
    # IRRA keeps no learned CLIP logit scale (its temperature is fixed, as the zoo's config is)
    load_checked(model, converted, source, allowed_missing=("clip.logit_scale",))
    return Conversion(model.eval(), dropped, spec.note)
