"""`tireid push`: a trained model folder -> the folder a Hub model repo holds -> the Hub.

The folder holds the inference-only weights (safetensors), `config.json` with its `auto_map`, the
remote-code files, the processor files, the run's `results.json`, the model card (`README.md`) and,
for a UIT model trained on synthetic data, the restoration picture the card shows. The card is
rendered from `results.json`, or given (`card=`, e.g. `hub_cards/<name>/README.md`, the only way for
a converted checkpoint, which has no `results.json`; its `conversion.json` travels with it).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from huggingface_hub import HfApi, ModelCard

from ..files import atomic_directory
from .model_card import render_model_card
from .upload import hub_api, upload_folder

RESULTS_FILE = "results.json"
RESTORATION_FIGURE = "restoration.png"
CONVERSION_FILE = "conversion.json"


def _load_trained(model_dir: Path, results_required: bool = True):
    """The model, its processor and its `results.json` (None when absent and not required)."""
    from transformers import AutoModel

    import tireid_hf  # noqa: F401  (registers the tireid model classes with the Auto classes)
    from ..processing import TIReIDProcessor

    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"--model {model_dir}: no config.json (expected a folder written by train.py)")
    results_path = model_dir / RESULTS_FILE
    if not results_path.is_file() and results_required:
        raise FileNotFoundError(f"--model {model_dir}: {RESULTS_FILE} is missing; the model card's numbers come from "
                                "the results.json that train.py writes (or give the card with --card)")
    results = json.loads(results_path.read_text()) if results_path.is_file() else None
    return AutoModel.from_pretrained(model_dir), TIReIDProcessor.from_pretrained(model_dir), results


def _given_card(card_path: Path, model) -> ModelCard:
    """The card at `card_path`, refused when it describes another method than `model`'s."""
    if not card_path.is_file():
        raise FileNotFoundError(f"--card {card_path}: no such file")
    card = ModelCard.load(card_path)
    method = card.data.to_dict().get("tireid_method")
    if model.config.model_type != f"tireid-{method}":
        raise ValueError(f"--card {card_path} describes a {method!r} model, but the model is {model.config.model_type!r}")
    return card


def _restoration_figure(model, processor, results: dict):
    """UIT's restoration of the first synthetic test image, or None (another method, an inference-only
    model without the decoder, or a real dataset whose images are not at hand)."""
    if not model.can_restore_images or results is None or results["dataset"] != "synthetic":
        return None
    from ..data import load_tireid_dataset
    from ..visualize import restoration_figure

    options = results["config"].get("data", {}).get("dataset_options", {})
    example = load_tireid_dataset("synthetic", **options)["test"][0]
    return restoration_figure(model, processor, example["image"], example["captions"][0])


def write_model_folder(model_dir: str | os.PathLike, out: str | os.PathLike, repo_id: str, *,
                       license: str | None = None, dataset_repo: str | None = None, overwrite: bool = False,
                       card: str | os.PathLike | None = None) -> Path:
    """Writes the Hub folder of the trained model in `model_dir` to `out` (all of it, or nothing).

    A checkpoint that still has training-only parts is exported with `export_for_inference()`; its
    retrieval embeddings are unchanged. `card` replaces the card rendered from `results.json`.
    """
    model_dir = Path(model_dir)
    model, processor, results = _load_trained(model_dir, results_required=card is None)
    figure = _restoration_figure(model, processor, results) if card is None else None
    exported = model if model.config.inference_only else model.export_for_inference()
    if card is not None:
        model_card = _given_card(Path(card), model)
    else:
        model_card = render_model_card(results, exported.config, repo_id=repo_id, license=license,
                                       dataset_repo=dataset_repo, figure=RESTORATION_FIGURE if figure is not None else None)
    with atomic_directory(out, overwrite=overwrite) as folder:
        exported.save_pretrained(folder)
        processor.save_pretrained(folder)
        for name in (RESULTS_FILE, CONVERSION_FILE):
            if (model_dir / name).is_file():
                (folder / name).write_text((model_dir / name).read_text())
        model_card.save(folder / "README.md")
        if figure is not None:
            figure.save(folder / RESTORATION_FIGURE)
    return Path(out)


def push_model(model_dir: str | os.PathLike, repo_id: str, *, private: bool = False, license: str | None = None,
               dataset_repo: str | None = None, token: str | None = None, api: HfApi | None = None,
               card: str | os.PathLike | None = None) -> str:
    """Writes the Hub folder of `model_dir` to a temporary place and uploads it to the model repo
    `repo_id` (created if needed) in one commit; returns the repo URL. Offline or without a token it
    fails before any work."""
    api = api or hub_api(token)
    with tempfile.TemporaryDirectory(prefix="tireid-push-") as staging:
        folder = write_model_folder(model_dir, Path(staging) / "model", repo_id, license=license,
                                    dataset_repo=dataset_repo, card=card)
        return upload_folder(folder, repo_id, repo_type="model", private=private, api=api,
                             commit_message=f"Upload {repo_id.split('/')[-1]} trained with tireid-hf")
