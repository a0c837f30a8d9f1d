"""ONNX encoders of a zoo model: the inference path of ``get_image_features`` / ``get_text_features``.

:func:`export_onnx` writes, into one folder (atomically):

* ``image_encoder.onnx``: ``pixel_values`` float32 [B, 3, H, W] -> ``image_embeds`` float32 [B, D];
* ``text_encoder.onnx``: ``input_ids`` int64 [B, L] and ``attention_mask`` int64 [B, L] (L <= 77) ->
  ``text_embeds`` float32 [B, D]; both L2-normalised, batch (and text length) dynamic;
* with ``int8=True`` also ``image_encoder.int8.onnx`` / ``text_encoder.int8.onnx``: onnxruntime's
  dynamic quantisation (int8 weights of MatMul/Gemm, activations quantised on the fly);
* the model's processor (``preprocessor_config.json`` + tokenizer files: the pre-processing the encoders
  expect), ``onnx_config.json`` (the model's fingerprint, type, shapes, image size, mean and std) and a
  ``README.md`` stating them.

The exporter is ``torch.onnx.export(..., dynamo=True)`` (torch.export + onnxscript): it exports every
method of the zoo as is (its own inference heads included), where optimum's exporters know only the
architectures they list; measured parity on the tiny test models is ~2e-7 (``tests/test_onnx_export.py``).

:class:`OnnxEncoders` runs them with onnxruntime behind the model interface ``embed_images``,
``embed_texts`` and :class:`~tireid_hf.retrieval.GalleryIndex` use, so an index built by the PyTorch
model is searched with the ONNX text encoder (same fingerprint).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch

from .files import atomic_directory
from .retrieval import model_fingerprint

__all__ = ["OnnxEncoders", "export_onnx"]

CONFIG_FILE = "onnx_config.json"
ENCODERS = {"image": "image_encoder", "text": "text_encoder"}
MAX_TEXT_LENGTH = 77


class _ImageEncoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model.get_image_features(pixel_values=pixel_values)


class _TextEncoder(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)


def _file_name(kind: str, int8: bool) -> str:
    return f"{ENCODERS[kind]}{'.int8' if int8 else ''}.onnx"


def export_onnx(model, processor, out: str | os.PathLike, *, int8: bool = False, overwrite: bool = False) -> Path:
    """Write the ONNX encoders of ``model`` (any zoo model; its inference path, eval mode) and its
    ``processor`` into the folder ``out`` (see the module docstring); returns ``out``."""
    import onnx

    model = model.eval()
    height, width = processor.image_processor.size["height"], processor.image_processor.size["width"]
    pixel_values = torch.zeros(2, 3, height, width)
    input_ids = torch.full((2, 8), 1, dtype=torch.long)
    attention_mask = torch.ones_like(input_ids)
    batch = torch.export.Dim("batch", min=1, max=4096)
    length = torch.export.Dim("length", min=2, max=MAX_TEXT_LENGTH)
    with atomic_directory(out, overwrite=overwrite) as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on constant folding and dimension names
        torch.onnx.export(_ImageEncoder(model).eval(), (pixel_values,), folder / _file_name("image", False), dynamo=True,
                          input_names=["pixel_values"], output_names=["image_embeds"],
                          dynamic_shapes=({0: batch},), external_data=False, verbose=False)
        torch.onnx.export(_TextEncoder(model).eval(), (input_ids, attention_mask), folder / _file_name("text", False),
                          dynamo=True, input_names=["input_ids", "attention_mask"], output_names=["text_embeds"],
                          dynamic_shapes=({0: batch, 1: length}, {0: batch, 1: length}), external_data=False, verbose=False)
        for kind in ENCODERS:
            onnx.checker.check_model(str(folder / _file_name(kind, False)))
            if int8:
                from onnxruntime.quantization import QuantType, quantize_dynamic

                quantize_dynamic(folder / _file_name(kind, False), folder / _file_name(kind, True), weight_type=QuantType.QInt8)
        processor.save_pretrained(folder)
        image_processor = processor.image_processor
        config = {
            "fingerprint": model_fingerprint(model),
            "model_type": model.config.model_type,
            "name_or_path": getattr(model, "name_or_path", None),
            "embed_dim": int(getattr(model.config, "embed_dim", 0) or 0),
            "image_size": [height, width],
            "image_mean": list(image_processor.image_mean),
            "image_std": list(image_processor.image_std),
            "max_text_length": MAX_TEXT_LENGTH,
            "int8": int8,
        }
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        (folder / "README.md").write_text(
            f"# ONNX encoders of `{config['name_or_path'] or config['model_type']}` ({config['model_type']})\n\n"
            f"Written by `tireid export onnx`. Inference path only; batch and text length are dynamic.\n\n"
            f"* `image_encoder.onnx`: `pixel_values` float32 [B, 3, {height}, {width}] -> `image_embeds` float32 "
            f"[B, {config['embed_dim']}], L2-normalised. Pre-processing: RGB, resized to {height}x{width}, scaled to "
            f"[0, 1], normalised with mean {config['image_mean']} and std {config['image_std']} "
            "(`preprocessor_config.json`; `AutoProcessor.from_pretrained(this folder)` does it).\n"
            f"* `text_encoder.onnx`: `input_ids`, `attention_mask` int64 [B, L], L <= {MAX_TEXT_LENGTH} -> `text_embeds` "
            f"float32 [B, {config['embed_dim']}], L2-normalised. Pre-processing: the CLIP tokenizer saved here "
            "(lower-cased BPE, start and end tokens, padded to the longest, truncated at 77).\n"
            + ("* `*.int8.onnx`: the same with onnxruntime's dynamic int8 quantisation of the weights.\n" if int8 else "")
            + f"\nScore = text_embeds @ image_embeds.T. Model fingerprint: `{config['fingerprint']}`.\n")
    return Path(out)


class OnnxEncoders(torch.nn.Module):
    """The encoders written by :func:`export_onnx`, run by onnxruntime, with the model interface
    (``get_image_features``, ``get_text_features``, ``config.embed_dim``) and the exported model's
    fingerprint (``tireid_fingerprint``), so :func:`~tireid_hf.retrieval.model_fingerprint` of it equals
    the PyTorch model's and a :class:`~tireid_hf.retrieval.GalleryIndex` built by either accepts it.

    Args:
        folder: the folder :func:`export_onnx` wrote.
        int8 (`bool`, *optional*, defaults to `False`): run the int8 variants.
        expected_fingerprint (`str`, *optional*): refuse (``ValueError`` naming the folder) encoders of
            another model.
    """

    def __init__(self, folder: str | os.PathLike, *, int8: bool = False, expected_fingerprint: str | None = None,
                 threads: int | None = None):
        super().__init__()
        import onnxruntime

        folder = Path(folder)
        config_path = folder / CONFIG_FILE
        try:
            config = json.loads(config_path.read_text())
            fingerprint, model_type = config["fingerprint"], config["model_type"]
        except FileNotFoundError:
            raise FileNotFoundError(f"{folder}: no {CONFIG_FILE}: not a folder written by `tireid export onnx`") from None
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{config_path}: unreadable ({error!r}); export the model again") from None
        if expected_fingerprint is not None and fingerprint != expected_fingerprint:
            raise ValueError(f"{folder}: these ONNX encoders were exported from another model ({config_path}: "
                             f"{fingerprint}, expected {expected_fingerprint}); export this model with `tireid export onnx`")
        if int8 and not config.get("int8"):
            raise ValueError(f"{folder}: has no int8 encoders ({config_path}: int8 false); export with --int8")
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.sessions = {}
        for kind in ENCODERS:
            path = folder / _file_name(kind, int8)
            try:
                self.sessions[kind] = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as error:  # noqa: BLE001  (onnxruntime raises its own types for missing and corrupt files)
                raise ValueError(f"{path}: not a loadable ONNX model ({str(error).splitlines()[0]})") from None
        self.config = SimpleNamespace(model_type=model_type, embed_dim=config.get("embed_dim", 0))
        self.tireid_fingerprint = fingerprint
        self.name_or_path = str(folder)

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        output = self.sessions["image"].run(None, {"pixel_values": pixel_values.detach().float().cpu().numpy()})[0]
        return torch.from_numpy(output)

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        feeds = {"input_ids": input_ids.detach().long().cpu().numpy(), "attention_mask": attention_mask.detach().long().cpu().numpy()}
        return torch.from_numpy(self.sessions["text"].run(None, feeds)[0])
