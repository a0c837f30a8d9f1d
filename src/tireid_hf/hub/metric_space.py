"""`tireid push-metric`: the `evaluate` metric `tireid_retrieval` as a Gradio Space folder.

Like the metrics of `evaluate` on the Hub: the module script, its card as `README.md` with the
Space YAML added, a small Gradio `app.py` (JSON in, metrics out) and `requirements.txt`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

from huggingface_hub import HfApi, RepoCard

from .. import __version__
from ..files import atomic_directory
from ..metrics import METRIC_PATH
from .upload import hub_api, upload_folder

MODULE = "tireid_retrieval"
SPACE_METADATA = dict(emoji="🚶", colorFrom="blue", colorTo="green", sdk="gradio", app_file="app.py", pinned=False)
# evaluate's own `launch_gradio_widget` uses `gr.inputs`, which Gradio 4 removed: a small app instead.
APP = f'''"""The `{MODULE}` metric Space: JSON in, the module's flat dict of metrics out."""

import json

import evaluate
import gradio as gr

module = evaluate.load("{MODULE}.py")
EXAMPLE = ("[[0.9, 0.1, 0.4], [0.2, 0.3, 0.8]]", "[0, 1]", "[0, 1, 1]")


def compute(predictions: str, references: str, gallery_pids: str) -> dict:
    """Scores [Q, G], query pids [Q] and gallery pids [G], each as JSON -> R1/R5/R10, mAP, mINP."""
    try:
        return module.compute(predictions=json.loads(predictions), references=json.loads(references),
                              gallery_pids=json.loads(gallery_pids))
    except (ValueError, TypeError) as error:
        raise gr.Error(str(error)) from None


demo = gr.Interface(
    compute,
    inputs=[gr.Textbox(label="predictions: scores [Q, G] (JSON)"), gr.Textbox(label="references: query pids [Q] (JSON)"),
            gr.Textbox(label="gallery_pids [G] (JSON)")],
    outputs=gr.JSON(label="{MODULE}"),
    examples=[list(EXAMPLE)],
    title="Metric: {MODULE}",
    description=module.info.description,
)

if __name__ == "__main__":
    demo.launch()
'''


def write_metric_space(out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Writes the Space folder of the `tireid_retrieval` metric to `out` (all of it, or nothing)."""
    source = Path(METRIC_PATH)
    card = RepoCard.load(source / "README.md")
    for key, value in dict(SPACE_METADATA, sdk_version=version("gradio")).items():
        card.data[key] = value
    with atomic_directory(out, overwrite=overwrite) as folder:
        shutil.copy(source / f"{MODULE}.py", folder / f"{MODULE}.py")
        card.save(folder / "README.md")
        (folder / "app.py").write_text(APP)
        # the module imports its one implementation from tireid_hf (`tireid_hf.metrics.retrieval`)
        (folder / "requirements.txt").write_text(f"evaluate>=0.4,<0.5\ntireid-hf>={__version__}\n")
    return Path(out)


def push_metric_space(repo_id: str, *, private: bool = False, token: str | None = None,
                      api: HfApi | None = None) -> str:
    """Writes the metric Space folder to a temporary place and uploads it to the Space `repo_id`."""
    api = api or hub_api(token)
    with tempfile.TemporaryDirectory(prefix="tireid-metric-") as staging:
        folder = write_metric_space(Path(staging) / MODULE)
        return upload_folder(folder, repo_id, repo_type="space", space_sdk="gradio", private=private, api=api,
                             commit_message=f"Upload the {MODULE} metric Space")
