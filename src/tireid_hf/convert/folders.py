"""`tireid convert`: a reference checkpoint file -> a model folder written with ``save_pretrained``.

Each folder holds the weights (safetensors), ``config.json`` (with ``auto_map`` and the remote code
for a zoo model), the processor when the checkpoint uses CLIP's vocabulary, and ``conversion.json``:
the source file and its SHA-256, the format, and every tensor the conversion dropped, by group.
The folder is written whole or not at all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .. import __version__
from ..files import atomic_directory, sha256_of_file
from ..processing import TIReIDProcessor, clip_tokenizer
from .checkpoint_files import read_state_dict
from .irra import VARIANTS, convert_irra_state
from .openai_layout import JIT_METADATA, clip_config_from_openai, load_checked, openai_to_transformers

CLIP_VOCABULARY_SIZE = 49408
REPORT_FILE = "conversion.json"


def _report(path: Path, fmt: str, dropped: dict, note: str, processor_note: str, **extra) -> dict:
    return dict(source=path.name, sha256=sha256_of_file(path), format=fmt, **extra, dropped=dropped,
                note=note or None, processor=processor_note, tireid_hf_version=__version__)


def _tokenizer_or_reason(text_config):
    """CLIP's tokenizer at the model's text length, or (None, why not) for another vocabulary."""
    if text_config.vocab_size != CLIP_VOCABULARY_SIZE:
        return None, (f"none written: the text encoder has {text_config.vocab_size} tokens, not CLIP's "
                      f"{CLIP_VOCABULARY_SIZE}; tokenise with the checkpoint's own vocabulary")
    return clip_tokenizer(model_max_length=text_config.max_position_embeddings), "CLIP tokenizer + image processor"


def convert_irra(checkpoint: str | os.PathLike, out: str | os.PathLike, *, variant: str = "irra",
                 image_size=(384, 128), overwrite: bool = False) -> dict:
    """Converts an IRRA-layout checkpoint (:mod:`.irra`) into a zoo model folder at `out`; returns
    the conversion report (also written as ``conversion.json``)."""
    path = Path(checkpoint)
    conversion = convert_irra_state(read_state_dict(path), variant=variant, image_size=image_size, source=str(path))
    config = conversion.model.config
    tokenizer, processor_note = _tokenizer_or_reason(config.clip_config.text_config)
    report = _report(path, "irra", conversion.dropped, conversion.note, processor_note, variant=variant,
                     method=VARIANTS[variant].method, image_size=list(config.image_size))
    with atomic_directory(out, overwrite=overwrite) as folder:
        conversion.model.save_pretrained(folder)
        if tokenizer is not None:
            TIReIDProcessor.for_image_size(config.image_size, tokenizer=tokenizer).save_pretrained(folder)
        (folder / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def convert_openai_clip(checkpoint: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False) -> dict:
    """Converts an OpenAI CLIP ViT file (JIT archive or state dict) into a `transformers` ``CLIPModel``
    folder at `out`, usable as ``clip_name_or_path`` (``XModel.from_clip(out)``, a config's
    ``clip_name_or_path``); returns the conversion report."""
    from transformers import CLIPImageProcessor, CLIPModel, CLIPProcessor

    path = Path(checkpoint)
    state = read_state_dict(path)
    config = clip_config_from_openai(state, str(path))
    model = CLIPModel(config)
    load_checked(model, openai_to_transformers(state, str(path)), str(path))
    tokenizer, processor_note = _tokenizer_or_reason(config.text_config)
    dropped = {"torchscript metadata": sorted(name for name in state if name in JIT_METADATA)}
    report = _report(path, "openai-clip", {key: value for key, value in dropped.items() if value}, "", processor_note,
                     image_size=config.vision_config.image_size)
    with atomic_directory(out, overwrite=overwrite) as folder:
        model.eval().save_pretrained(folder)
        if tokenizer is not None:
            side = config.vision_config.image_size
            image_processor = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
            CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
        (folder / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report
