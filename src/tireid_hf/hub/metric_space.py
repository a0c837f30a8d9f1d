"""`tireid push-metric`: the `evaluate` metric `tireid_retrieval` as a Gradio Space folder.

Like the metrics of `evaluate` on the Hub: the module script and the implementation it imports
(``ranking.py``, which `evaluate` fetches beside the script), its card as `README.md` with the Space
YAML added, a small Gradio `app.py` (JSON in, metrics out) and `requirements.txt` (no tireid-hf: the
module stands alone).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from importlib.metadata import requires, version
from pathlib import Path

from huggingface_hub import HfApi, RepoCard

from ..files import atomic_directory
from ..metrics import METRIC_PATH
from .upload import hub_api, upload_folder

MODULE = "tireid_retrieval"
FILES = (f"{MODULE}.py", "ranking.py")  # the script and its relative import
REQUIREMENTS = ("evaluate", "torch", "numpy")  # what the two files import, at tireid-hf's own bounds
SPACE_METADATA = dict(emoji="🚶", colorFrom="blue", colorTo="green", sdk="gradio", app_file="app.py", pinned=False)
# evaluate's own `launch_gradio_widget` uses `gr.inputs`, which Gradio 4 removed: a small app instead.
APP = f'''"""The `{MODULE}` metric Space: JSON in, the module's flat dict of metrics out."""

import json

import evaluate
import gradio as gr

module = evaluate.load("{MODULE}.py")
EXAMPLE = ("[[0.9, 0.1, 0.4], [0.2, 0.3, 0.8]]", "[0, 1]", "[0, 1, 1]")


def compute(predictions: str, references: str, gallery_pids: str) -> dict:
    """Scores [Q, G], query pids [Q] and gallery pids [G], each as JSON -> R1/R5/R10, mAP, mINP, TPR@FPR."""
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
        for name in FILES:
            shutil.copy(source / name, folder / name)
        card.save(folder / "README.md")
        (folder / "app.py").write_text(APP)
        (folder / "requirements.txt").write_text("".join(f"{line}\n" for line in _requirements()))
    return Path(out)


def _requirements() -> list[str]:
    """The lines of :data:`REQUIREMENTS` in tireid-hf's own requirements (e.g. ``torch>=2.4``)."""
    lines = [line for line in requires("tireid-hf") if ";" not in line]
    return [line for name in REQUIREMENTS for line in lines if re.split(r"[<>=!~ ]", line, maxsplit=1)[0] == name]


def push_metric_space(repo_id: str, *, private: bool = False, token: str | None = None,
                      api: HfApi | None = None) -> str:
    """Writes the metric Space folder to a temporary place and uploads it to the Space `repo_id`."""
    api = api or hub_api(token)
    with tempfile.TemporaryDirectory(prefix="tireid-metric-") as staging:
        folder = write_metric_space(Path(staging) / MODULE)
        return upload_folder(folder, repo_id, repo_type="space", space_sdk="gradio", private=private, api=api,
                             commit_message=f"Upload the {MODULE} metric Space")
