"""`tireid push-space`: the demo Space (`spaces/tireid-demo/`) over a chosen model and gallery -> the Hub.

The Space folder holds the demo's ``app.py`` as it is, ``space_settings.json`` (the model and the
gallery the app serves by default), ``requirements.txt`` pinned to the versions of what the app
imports (tireid-hf with its demo extra, gradio, torch, transformers, as installed here), and a
``README.md`` whose metadata is the Space's configuration (sdk, sdk_version, app_file, models,
suggested_hardware). A model or gallery given as a local folder is copied into the Space (``model/``,
``gallery/``); a Hub model id is referenced (and linked by the ``models`` metadata).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

from huggingface_hub import HfApi, SpaceCard, SpaceCardData

from .. import __version__
from ..files import atomic_directory
from .upload import hub_api, upload_folder

SPACE_NAME = "tireid-demo"
SETTINGS_FILE = "space_settings.json"
# CPU is enough: the gallery is embedded once at start-up (and cached), a query is one text forward.
HARDWARE = "cpu-basic"
# What app.py imports, beside the standard library (tireid-hf pulls the rest through its [demo] extra).
APP_IMPORTS = ("gradio", "torch", "transformers")
SPACE_METADATA = dict(title="tireid-hf text-to-image person search", emoji="🚶", colorFrom="blue", colorTo="green",
                      sdk="gradio", app_file="app.py", pinned=False, license="apache-2.0",
                      short_description="Search pedestrian images by a sentence with a tireid-hf model",
                      tags=["tireid-hf", "text-to-image-retrieval", "person-re-identification"])
BODY = """
# {name}

Type a description of a person; the model ranks a gallery of pedestrian images and shows the top k
with their rank and cosine score. Example captions of a gallery with known identities mark the true
matches green and the others red, with the query's R@1 and AP.

- **Model**: {model}
- **Gallery**: {gallery}
- **Hardware**: `{hardware}` (CPU) is enough: the gallery is embedded once at start-up and cached;
  each query is one text forward pass. A large gallery (thousands of images) makes the first start
  slow on CPU: pick a GPU Space or a smaller gallery.

Written by `tireid push-space` (tireid-hf {tireid_version}) from the demo in the tireid-hf repository
(`spaces/tireid-demo/`); `space_settings.json` holds the model and gallery, and the `TIREID_MODEL` /
`TIREID_GALLERY` Space variables override them.

## Intended use

A research demonstration on benchmark or generated images. Do not use it to identify, locate or
track real people, or on images collected without the knowledge of the people in them.
"""


def demo_source() -> Path:
    """The demo Space folder of a tireid-hf checkout: ``spaces/tireid-demo`` under the current folder,
    or beside the source tree this package runs from."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        folder = root / "spaces" / SPACE_NAME
        if (folder / "app.py").is_file():
            return folder
    raise FileNotFoundError(f"spaces/{SPACE_NAME}/app.py not found: run `tireid push-space` from a tireid-hf checkout "
                            "(or pass --space-dir)")


def pinned_requirements() -> str:
    """``requirements.txt``: tireid-hf[demo] and what app.py imports, at the versions installed here
    (local build labels such as ``+cpu`` removed: the Space installs from PyPI)."""
    lines = [f"tireid-hf[demo]=={__version__}"]
    lines += [f"{name}=={version(name).split('+')[0]}" for name in APP_IMPORTS]
    return "# the versions the demo was tested with (tireid push-space)\n" + "\n".join(lines) + "\n"


def _place(source: str | None, folder: Path, name: str, what: str) -> tuple[str | None, str]:
    """Copies a local folder `source` into ``folder/name``; returns (the setting, a description)."""
    if source is None or source == "synthetic":
        return source, "the synthetic test split (generated at start-up)"
    path = Path(source)
    if path.is_dir():
        shutil.copytree(path, folder / name, ignore=shutil.ignore_patterns("gallery-cache", "checkpoint-*", "runs"))
        return name, f"`{path.name}`, copied into this Space (`{name}/`)"
    if what == "gallery":
        raise FileNotFoundError(f"--gallery {source}: not a folder (give a folder of images, a prepared dataset, or 'synthetic')")
    return source, f"[`{source}`](https://huggingface.co/{source})"


def write_space(out: str | os.PathLike, *, model: str | None, gallery: str | None = None, space_dir: str | os.PathLike | None = None,
                name: str = SPACE_NAME, overwrite: bool = False) -> Path:
    """Writes the Space folder (all of it, or nothing) serving `model` (a local folder or a Hub id; None:
    the Space's ``TIREID_MODEL`` variable) over `gallery` (a folder of images, a prepared dataset
    folder, or None / ``synthetic``)."""
    source = Path(space_dir) if space_dir else demo_source()
    if model is not None and Path(model).exists() and not (Path(model) / "config.json").is_file():
        raise FileNotFoundError(f"--model {model}: no config.json (expected a folder written by train.py or tireid convert)")
    with atomic_directory(out, overwrite=overwrite) as folder:
        shutil.copy(source / "app.py", folder / "app.py")
        model_setting, model_text = (_place(model, folder, "model", "model") if model is not None else
                                     (None, "the `TIREID_MODEL` Space variable (set it in the Space's settings)"))
        gallery_setting, gallery_text = _place(gallery, folder, "gallery", "gallery")
        (folder / SETTINGS_FILE).write_text(json.dumps({"model": model_setting, "gallery": gallery_setting}, indent=2) + "\n")
        (folder / "requirements.txt").write_text(pinned_requirements())
        metadata = dict(SPACE_METADATA, sdk_version=version("gradio"), suggested_hardware=HARDWARE)
        if model is not None and model_setting == model:  # a Hub id: link the model page
            metadata["models"] = [model]
        card = SpaceCard(f"---\n{SpaceCardData(**metadata).to_yaml()}\n---\n" + BODY.format(
            name=name, model=model_text, gallery=gallery_text, hardware=HARDWARE, tireid_version=__version__))
        card.save(folder / "README.md")
    return Path(out)


def push_space(repo_id: str, *, model: str | None, gallery: str | None = None, space_dir: str | os.PathLike | None = None,
               private: bool = False, token: str | None = None, api: HfApi | None = None) -> str:
    """Writes the Space folder to a temporary place and uploads it to the Space `repo_id` (created if
    needed) in one commit; offline or without a token it fails before any work."""
    api = api or hub_api(token)
    with tempfile.TemporaryDirectory(prefix="tireid-space-") as staging:
        folder = write_space(Path(staging) / "space", model=model, gallery=gallery, space_dir=space_dir,
                             name=repo_id.split("/")[-1])
        return upload_folder(folder, repo_id, repo_type="space", space_sdk="gradio", private=private, api=api,
                             commit_message=f"Upload the tireid-hf demo over {model or 'the TIREID_MODEL variable'}")
