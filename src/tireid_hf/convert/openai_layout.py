"""OpenAI CLIP's parameter layout (``clip/model.py``) -> `transformers`' ``CLIPModel``.

OpenAI's names, with ``visual.`` for the image tower and none for the text tower::

    visual.conv1.weight [W, 3, p, p]          visual.class_embedding [W]
    visual.positional_embedding [1 + G, W]    visual.ln_pre / ln_post       visual.proj [W, D]
    visual.transformer.resblocks.i.{attn.in_proj_weight [3W, W], attn.in_proj_bias [3W],
        attn.out_proj, ln_1, mlp.c_fc, mlp.c_proj, ln_2}
    token_embedding.weight [V, Wt]            positional_embedding [L, Wt]
    transformer.resblocks.i.{...as above}     ln_final                      text_projection [Wt, D]
    logit_scale []                            (JIT files also hold input_resolution, context_length, vocab_size)

``in_proj`` is split in three (q, k, v) along its first dimension; the two projections are stored
transposed by OpenAI (``x @ proj``) and as ``nn.Linear`` weights (``x @ weight.T``) by `transformers`.
Heads are ``width / 64`` in both towers (OpenAI's rule); activations QuickGELU; LayerNorm eps 1e-5.
"""

from __future__ import annotations

import re

import torch
from transformers import CLIPConfig

from .checkpoint_files import ConversionError

# Scalars a TorchScript CLIP archive holds beside its weights (OpenAI's build_model deletes them too).
JIT_METADATA = ("input_resolution", "context_length", "vocab_size")

_DIRECT = {
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "logit_scale": "logit_scale",
}
_TRANSPOSED = {"visual.proj": "visual_projection.weight", "text_projection": "text_projection.weight"}
_BLOCK = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$")
_BLOCK_PARTS = {
    "attn.out_proj.weight": "self_attn.out_proj.weight", "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_1.weight": "layer_norm1.weight", "ln_1.bias": "layer_norm1.bias",
    "ln_2.weight": "layer_norm2.weight", "ln_2.bias": "layer_norm2.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight", "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight", "mlp.c_proj.bias": "mlp.fc2.bias",
}
_REQUIRED = ("visual.conv1.weight", "visual.positional_embedding", "visual.proj", "token_embedding.weight",
             "positional_embedding", "ln_final.weight", "text_projection")


def check_vit_layout(state: dict[str, torch.Tensor], source: str) -> None:
    """Refuses what is not an OpenAI-layout CLIP ViT: a ResNet CLIP, or missing core tensors."""
    if any(name.startswith(("visual.layer1.", "visual.attnpool.")) for name in state):
        raise ConversionError(f"{source}: a CLIP with a ResNet image encoder (visual.layer1.*, visual.attnpool.*); "
                              "the zoo's models are ViTs only (ViT-B/16, ViT-B/32, ViT-L/14)")
    missing = [name for name in _REQUIRED if name not in state]
    if missing:
        raise ConversionError(f"{source}: not an OpenAI-layout CLIP ViT; missing {', '.join(missing)}")


def _count_blocks(state: dict, prefix: str) -> int:
    """Number of residual blocks under `prefix` (``...resblocks.``): distinct indices after it."""
    return len({name[len(prefix):].split(".")[0] for name in state if name.startswith(prefix)})


def clip_config_from_openai(state: dict[str, torch.Tensor], source: str, vision_image_size: int | None = None) -> CLIPConfig:
    """The `CLIPConfig` of an OpenAI-layout state dict, read from its shapes (as OpenAI's
    ``build_model`` does). `vision_image_size` defaults to the square grid of the position table."""
    check_vit_layout(state, source)
    vision_width, _, patch, _ = state["visual.conv1.weight"].shape
    embed_dim = state["text_projection"].shape[1]
    if state["visual.proj"].shape[1] != embed_dim:
        raise ConversionError(f"{source}: visual.proj projects to {state['visual.proj'].shape[1]} but text_projection "
                              f"to {embed_dim}; both towers must share the embedding width")
    if vision_image_size is None:
        side = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        vision_image_size = side * patch
    context_length, text_width = state["positional_embedding"].shape
    vocab_size = state["token_embedding.weight"].shape[0]
    for name, width in (("visual", vision_width), ("text", text_width)):
        if width % 64:
            raise ConversionError(f"{source}: {name} width {width} is not a multiple of 64 (OpenAI CLIP has width / 64 heads)")
    common = dict(hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=embed_dim)
    text_config = dict(common, vocab_size=vocab_size, hidden_size=text_width, intermediate_size=4 * text_width,
                       num_hidden_layers=_count_blocks(state, "transformer.resblocks."),
                       num_attention_heads=text_width // 64, max_position_embeddings=context_length,
                       # OpenAI's start/end-of-text tokens are the last two of the vocabulary; the text
                       # feature is taken at the end-of-text token
                       bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1)
    vision_config = dict(common, hidden_size=vision_width, intermediate_size=4 * vision_width,
                         num_hidden_layers=_count_blocks(state, "visual.transformer.resblocks."),
                         num_attention_heads=vision_width // 64, patch_size=patch, image_size=vision_image_size)
    return CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=embed_dim)


def openai_to_transformers(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Renames (and splits / transposes) every tensor of an OpenAI-layout CLIP state dict to
    `CLIPModel`'s names, as float32. JIT metadata scalars are skipped.

    Raises:
        ConversionError: listing every name that is not part of OpenAI's CLIP ViT layout.
    """
    converted, unknown = {}, []
    for name, value in state.items():
        value = value.float()
        block = _BLOCK.match(name)
        if name in _DIRECT:
            converted[_DIRECT[name]] = value
        elif name in _TRANSPOSED:
            converted[_TRANSPOSED[name]] = value.t().contiguous()
        elif block:
            tower = "vision_model" if block.group(1) else "text_model"
            prefix, part = f"{tower}.encoder.layers.{block.group(2)}.", block.group(3)
            if part in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = part.rsplit("_", 1)[1]
                if value.shape[0] % 3:
                    raise ConversionError(f"{source}: {name} has {value.shape[0]} rows, not 3 x width")
                for projection, chunk in zip(("q", "k", "v"), value.chunk(3, dim=0)):
                    converted[f"{prefix}self_attn.{projection}_proj.{kind}"] = chunk.contiguous()
            elif part in _BLOCK_PARTS:
                converted[prefix + _BLOCK_PARTS[part]] = value
            else:
                unknown.append(name)
        elif name not in JIT_METADATA:
            unknown.append(name)
    if unknown:
        raise ConversionError(f"{source}: {len(unknown)} tensor(s) not in OpenAI's CLIP ViT layout: "
                              + ", ".join(sorted(unknown)[:12]) + (" ..." if len(unknown) > 12 else ""))
    return converted


def load_checked(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str,
                 allowed_missing: tuple[str, ...] = ()) -> None:
    """``module.load_state_dict(state)`` after checking that every tensor fits: raises one
    `ConversionError` listing the missing names (other than `allowed_missing`), the unexpected names
    and the shapes that do not fit (expected vs found)."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state) - set(allowed_missing))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(f"{name} (model {list(expected[name].shape)}, checkpoint {list(value.shape)})"
                        for name, value in state.items() if name in expected and expected[name].shape != value.shape)
    problems = [(label, names) for label, names in (("missing", missing), ("unexpected", unexpected),
                                                    ("shape mismatch", mismatched)) if names]
    if problems:
        raise ConversionError(f"{source}: the weights do not fit {type(module).__name__}: " + "; ".join(
            f"{label}: {', '.join(names[:8])}" + (" ..." if len(names) > 8 else "") for label, names in problems))
    module.load_state_dict(state, strict=False)
