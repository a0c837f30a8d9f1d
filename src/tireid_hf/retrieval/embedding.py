"""Embedding a gallery or a list of captions with a model, in batches, optionally sharded across processes.

The model is any ``transformers`` model with ``get_image_features(pixel_values=[B, 3, H, W])`` and
``get_text_features(input_ids=[B, L], attention_mask=[B, L])`` returning L2-normalised ``[B, D]``
embeddings; the processor is called like ``CLIPProcessor``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

__all__ = ["embed_images", "embed_texts", "model_fingerprint"]


def model_fingerprint(model: torch.nn.Module) -> str:
    """Identity of a model's weights: ``"<model_type>:<sha256>"``.

    The SHA-256 runs over every ``state_dict`` entry in name order: its name, dtype, shape and raw
    bytes. Two models share a fingerprint exactly when they have the same ``model_type`` and the
    same tensors, so any fine-tuning step, another checkpoint or another method changes it (so does
    dropping training-only submodules, e.g. ``export_for_inference()``: rebuild the index then).
    A model that stands for another one (the ONNX encoders of ``tireid export onnx``) carries that
    model's fingerprint as ``tireid_fingerprint``, which is returned as is.
    """
    stored = getattr(model, "tireid_fingerprint", None)
    if isinstance(stored, str):
        return stored
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None) or type(model).__name__
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"{model_type}:{digest.hexdigest()}"


def device_of(model: torch.nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _check_embeddings(embeds, name: str, expected_rows: int) -> torch.Tensor:
    if not isinstance(embeds, torch.Tensor) or embeds.dim() != 2 or embeds.shape[0] != expected_rows:
        got = list(embeds.shape) if isinstance(embeds, torch.Tensor) else type(embeds).__name__
        raise ValueError(f"`{name}` must return a tensor of shape [{expected_rows}, D], got {got}")
    return embeds.detach().float().cpu()


def _shard_bounds(total: int, accelerator) -> tuple[int, int]:
    """This process' contiguous share ``[start, end)`` of ``total`` items, as Accelerate's
    ``split_between_processes`` cuts it (all of them without accelerator; an empty share is ``(total, total)``)."""
    if accelerator is None or accelerator.num_processes == 1:
        return 0, total
    with accelerator.split_between_processes(torch.arange(total)) as mine:
        return (int(mine[0]), int(mine[-1]) + 1) if len(mine) else (total, total)


def _gather_shards(local: torch.Tensor, accelerator) -> torch.Tensor:
    """Concatenate every process' shard in rank order, each item exactly once. Shards may differ in
    length: they are padded to the longest for the all-gather (``pad_across_processes``) and each
    process' padding is cut off again, by the shard lengths gathered alongside."""
    if accelerator is None or accelerator.num_processes == 1:
        return local
    lengths = accelerator.gather(torch.tensor([local.shape[0]], device=accelerator.device)).cpu().tolist()
    padded = accelerator.pad_across_processes(local.to(accelerator.device), dim=0)
    gathered = accelerator.gather(padded).cpu().reshape(accelerator.num_processes, -1, local.shape[1])
    return torch.cat([gathered[rank, :length] for rank, length in enumerate(lengths)])


def _embed_in_batches(items: Sequence, batch_size: int, embed_batch, name: str, width: int, show_progress: bool,
                      accelerator=None) -> torch.Tensor:
    """``embed_batch(list)`` over ``items`` in batches -> float32 [len(items), D] on CPU; with an
    ``accelerator`` each process embeds a contiguous shard and the shards are gathered in order."""
    if len(items) == 0:
        raise ValueError(f"`{name}` is empty: there is nothing to embed")
    start, end = _shard_bounds(len(items), accelerator)
    chunks = []
    for offset in tqdm(range(start, end, batch_size), desc=f"embedding {name}", unit="batch", disable=not show_progress):
        batch = list(items[offset : min(offset + batch_size, end)])
        with torch.inference_mode():
            embeds = embed_batch(batch)
        chunks.append(_check_embeddings(embeds, f"embedding of {name}", len(batch)))
    local = torch.cat(chunks) if chunks else torch.zeros(0, width)  # an empty shard: more processes than items
    return _gather_shards(local, accelerator)


def _embedding_width(model) -> int:
    return int(getattr(getattr(model, "config", None), "embed_dim", 0) or 0)


def embed_images(
    model, processor, images: Sequence, batch_size: int = 64, show_progress: bool = True, accelerator=None
) -> torch.Tensor:
    """Image embeddings ``model.get_image_features`` of ``images`` (N PIL images), float32 [N, D] on CPU.

    ``images`` is anything with ``len`` and slicing, e.g. a list or a ``datasets`` column (decoded one
    batch at a time). Runs under ``torch.inference_mode`` in batches of ``batch_size``. With an
    Accelerate ``accelerator``, each process embeds a contiguous shard and all get the whole result.
    """
    device = device_of(model)

    def embed_batch(batch):
        pixel_values = processor(images=batch, return_tensors="pt")["pixel_values"].to(device)
        return model.get_image_features(pixel_values=pixel_values)

    return _embed_in_batches(images, batch_size, embed_batch, "images", _embedding_width(model), show_progress, accelerator)


def tokenize(processor, texts: list[str], device: torch.device) -> dict[str, torch.Tensor]:
    tokens = processor(text=texts, return_tensors="pt", padding=True, truncation=True)
    return {"input_ids": tokens["input_ids"].to(device), "attention_mask": tokens["attention_mask"].to(device)}


def embed_texts(
    model, processor, texts: Sequence[str], batch_size: int = 256, show_progress: bool = True, accelerator=None
) -> torch.Tensor:
    """Text embeddings ``model.get_text_features`` of ``texts`` (N strings), float32 [N, D] on CPU
    (sharded across processes like :func:`embed_images` when an ``accelerator`` is given)."""
    if isinstance(texts, str):
        raise TypeError("`texts` must be a sequence of strings, got a single string (wrap it in a list)")
    device = device_of(model)

    def embed_batch(batch):
        return model.get_text_features(**tokenize(processor, batch, device))

    return _embed_in_batches(texts, batch_size, embed_batch, "texts", _embedding_width(model), show_progress, accelerator)
