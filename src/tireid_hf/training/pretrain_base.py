"""Contrastive pretraining of the zoo's small CLIP base (``make base``): the stand-in, on a CPU, for
``openai/clip-vit-base-patch16``.

A plain ``transformers.CLIPModel`` is trained from random weights with CLIP's own symmetric
image-text loss (``CLIPModel(..., return_loss=True)``: cross-entropy over the rows and the columns of
the ``logit_scale``-scaled cosine matrix of the batch; no identity labels) on the alt-text corpus of
:mod:`tireid_hf.data.synthetic.pretraining` (square outdoor scenes, other identities, other captions
than the benchmark's). The result is a ``save_pretrained`` folder of the model and a
``CLIPProcessor`` (CLIP's real BPE tokenizer, OpenAI's normalisation, square images), loadable with
no tireid-hf code, that method models start from through ``XModel.from_clip`` exactly as they do
from OpenAI's weights (the square position table resized once to the benchmark's rectangular grid).

Determinism: one CPU thread, every random draw from seeded generators, so the same config, torch
version and CPU type give the same bytes (checked by a test on a small config).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, get_cosine_schedule_with_warmup
from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from ..files import atomic_directory
from ..data.synthetic.pretraining import PretrainingCorpusConfig, pretraining_corpus
from ..modeling.processing_tireid import clip_tokenizer

DEFAULT_BASE = "bases/clip-synthetic"
TRAINING_LOG = "pretraining_log.json"


@dataclass(frozen=True)
class BasePretrainingConfig:
    """What ``make base`` trains. The defaults are the committed base's.

    Args:
        num_images: training scenes of the corpus; ``num_held_out`` more (the next indices) are kept
            for the held-out zero-shot retrieval figures.
        image_size: side of the square scenes (CLIP's square input; ``patch_size`` must divide it).
        epochs / batch_size / learning_rate / weight_decay / warmup_ratio: AdamW with a linear
            warm-up over ``warmup_ratio`` of the steps, then cosine decay to 0. No weight decay on
            biases, LayerNorm gains, embeddings and ``logit_scale``.
        text_length: tokens per caption (alt-text is short; CLIP's 77 positions stay in the model).
        vision / text: sizes of the two towers (``hidden_size``, ``num_hidden_layers``,
            ``num_attention_heads``; the MLP is 4x wide); projection_dim: the joint width.
        seed: model initialisation, batch order, caption choice and flips.
    """

    num_images: int = 20_000
    num_held_out: int = 1_000
    image_size: int = 64
    patch_size: int = 8
    epochs: int = 24
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.1
    warmup_ratio: float = 0.05
    text_length: int = 32
    vision: dict = field(default_factory=lambda: {"hidden_size": 96, "num_hidden_layers": 4, "num_attention_heads": 4})
    text: dict = field(default_factory=lambda: {"hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4})
    projection_dim: int = 64
    seed: int = 0

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(f"BasePretrainingConfig: image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")
        if self.batch_size > self.num_images:
            raise ValueError(f"BasePretrainingConfig: batch_size {self.batch_size} exceeds num_images {self.num_images}")

    def clip_config(self) -> CLIPConfig:
        """The ``CLIPConfig`` of the base (CLIP's text length 77 and vocabulary 49,408 kept)."""
        def tower(sizes: dict) -> dict:
            return {**sizes, "intermediate_size": 4 * sizes["hidden_size"]}
        return CLIPConfig(
            projection_dim=self.projection_dim,
            text_config={**tower(self.text), "max_position_embeddings": 77},
            vision_config={**tower(self.vision), "image_size": self.image_size, "patch_size": self.patch_size},
        )

    def corpus_config(self) -> PretrainingCorpusConfig:
        return PretrainingCorpusConfig(num_images=self.num_images + self.num_held_out, image_size=self.image_size)


def pretrain_base(out: str | os.PathLike, config: BasePretrainingConfig = BasePretrainingConfig(), *,
                  overwrite: bool = False, progress: bool = True) -> dict:
    """Pretrains the base and writes it to `out` (all or nothing); returns the training log
    (per-epoch mean loss, held-out zero-shot R@1 both ways, the config and a corpus fingerprint),
    which is also written to ``out/pretraining_log.json``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with atomic_directory(out, overwrite=overwrite) as tmp:
            images, captions = pretraining_corpus(config.corpus_config(), progress=progress)
            tokenizer = clip_tokenizer()
            model, log = _train(config, images, captions, tokenizer, progress)
            model.save_pretrained(tmp)
            _processor(config, tokenizer).save_pretrained(tmp)
            log["corpus_fingerprint"] = corpus_fingerprint(images, captions)
            (tmp / TRAINING_LOG).write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")
            (tmp / "README.md").write_text(_card(config, log), encoding="utf-8")
    finally:
        torch.set_num_threads(threads)
    return log


def corpus_fingerprint(images, captions) -> str:
    """SHA-256 (16 hex digits) of the corpus' pixels and captions: a changed generator changes it."""
    digest = hashlib.sha256(images.tobytes())
    digest.update(json.dumps(captions).encode())
    return digest.hexdigest()[:16]


def _processor(config: BasePretrainingConfig, tokenizer) -> CLIPProcessor:
    side = config.image_size
    image_processor = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                                         image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD)
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def _pixels(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [N, S, S, 3] -> normalised float [N, 3, S, S], as the saved ``CLIPImageProcessor`` does:
    ``(x / 255 - OPENAI_CLIP_MEAN) / OPENAI_CLIP_STD``."""
    mean = torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)
    return (images_uint8.permute(0, 3, 1, 2).float() / 255.0 - mean) / std


def _optimizer(model: CLIPModel, config: BasePretrainingConfig) -> torch.optim.AdamW:
    decayed, kept = [], []
    for name, parameter in model.named_parameters():
        no_decay = parameter.dim() < 2 or "embedding" in name or name == "logit_scale"
        (kept if no_decay else decayed).append(parameter)
    groups = [{"params": decayed, "weight_decay": config.weight_decay}, {"params": kept, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=(0.9, 0.98), eps=1e-6)


def _train(config: BasePretrainingConfig, images, captions, tokenizer, progress: bool) -> tuple[CLIPModel, dict]:
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = CLIPModel(config.clip_config())
    pixels = torch.from_numpy(images)
    flat = [text for per_image in captions for text in per_image]
    tokens = tokenizer(flat, padding="max_length", truncation=True, max_length=config.text_length, return_tensors="pt")
    per_image = len(captions[0])
    input_ids = tokens["input_ids"].view(len(captions), per_image, -1)
    attention_mask = tokens["attention_mask"].view(len(captions), per_image, -1)

    train_count = config.num_images
    steps_per_epoch = train_count // config.batch_size
    total = steps_per_epoch * config.epochs
    optimizer = _optimizer(model, config)
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(config.warmup_ratio * total), total)
    log = {"config": dataclasses.asdict(config), "epochs": []}
    bar = tqdm(total=total, desc="pretraining the CLIP base", unit="step", disable=not progress)
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(train_count, generator=generator)
        caption_choice = torch.randint(per_image, (train_count,), generator=generator)
        flips = torch.rand(train_count, generator=generator) < 0.5
        losses = []
        for step in range(steps_per_epoch):
            batch = order[step * config.batch_size:(step + 1) * config.batch_size]
            batch_pixels = _pixels(pixels[batch])
            batch_pixels = torch.where(flips[batch].view(-1, 1, 1, 1), batch_pixels.flip(-1), batch_pixels)
            choice = caption_choice[batch]
            loss = model(input_ids=input_ids[batch, choice], attention_mask=attention_mask[batch, choice],
                         pixel_values=batch_pixels, return_loss=True).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            with torch.no_grad():  # CLIP clamps its temperature at 1/100
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(loss.item())
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
        held_out = _held_out_recall(model, pixels, input_ids, attention_mask, config)
        log["epochs"].append({"epoch": epoch + 1, "loss": sum(losses) / len(losses), **held_out})
    bar.close()
    return model.eval(), log


@torch.no_grad()
def _held_out_recall(model: CLIPModel, pixels, input_ids, attention_mask, config: BasePretrainingConfig) -> dict:
    """Zero-shot R@1 (%) on the held-out scenes, each with its first caption: text->image and image->text
    over ``num_held_out`` candidates (chance: 100 / num_held_out)."""
    model.eval()
    held = slice(config.num_images, config.num_images + config.num_held_out)
    image_embeds, text_embeds = [], []
    for start in range(held.start, held.stop, 256):
        rows = slice(start, min(start + 256, held.stop))
        image_embeds.append(model.get_image_features(pixel_values=_pixels(pixels[rows])).pooler_output)
        text_embeds.append(model.get_text_features(input_ids=input_ids[rows, 0],
                                                     attention_mask=attention_mask[rows, 0]).pooler_output)
    model.train()
    images = torch.nn.functional.normalize(torch.cat(image_embeds), dim=-1)
    texts = torch.nn.functional.normalize(torch.cat(text_embeds), dim=-1)
    similarity = texts @ images.T
    target = torch.arange(similarity.shape[0])
    return {
        "held_out_t2i_R1": 100.0 * (similarity.argmax(dim=1) == target).float().mean().item(),
        "held_out_i2t_R1": 100.0 * (similarity.argmax(dim=0) == target).float().mean().item(),
    }


def _card(config: BasePretrainingConfig, log: dict) -> str:
    last = log["epochs"][-1]
    vision, text = config.vision, config.text
    return f"""---
library_name: transformers
pipeline_tag: zero-shot-image-classification
tags: [clip, tireid-hf, synthetic]
license: apache-2.0
---
# clip-synthetic: the tireid-hf zoo's small pretrained CLIP base

A `transformers.CLIPModel` pretrained from random weights, contrastively (CLIP's symmetric image-text
loss, no identity labels), on {config.num_images:,} generated outdoor scenes with short alt-text captions
(`tireid_hf.data.synthetic.pretraining`): other identities, other rendering (square scenes, people at
45-95 % of the height or in close-up) and other captions than the synthetic re-identification
benchmark. It plays, on a CPU, the part `openai/clip-vit-base-patch16` plays on a GPU: every
`configs/*_synthetic.yaml` starts from it through `XModel.from_clip`.

- Vision: ViT, {vision['num_hidden_layers']} layers, width {vision['hidden_size']}, {vision['num_attention_heads']} heads, \
{config.image_size}x{config.image_size} images, {config.patch_size}x{config.patch_size} patches.
- Text: {text['num_hidden_layers']} layers, width {text['hidden_size']}, CLIP's BPE vocabulary (49,408 tokens), 77 positions.
- Joint width {config.projection_dim}. {config.epochs} epochs, batch {config.batch_size}, AdamW lr {config.learning_rate:g}, \
weight decay {config.weight_decay:g}, cosine with {config.warmup_ratio:.0%} warm-up, seed {config.seed}, one CPU thread.
- Held-out zero-shot R@1 over {config.num_held_out:,} scenes: text->image {last['held_out_t2i_R1']:.1f}, \
image->text {last['held_out_i2t_R1']:.1f} (chance {100 / config.num_held_out:.1f}). Per epoch: `{TRAINING_LOG}`.

Regenerate, bit-identically on the same CPU type and torch version: `make base`.
"""
