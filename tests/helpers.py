"""Helpers shared by several test files: loading a folder as remote code in a fresh process, and a
fake `HfApi` recording the calls a push would make."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import torch

REMOTE_LOAD = textwrap.dedent(
    """
    import sys
    sys.modules["tireid_hf"] = None  # the package must not be importable: only the remote code may run
    import torch
    from transformers import AutoModel
    folder, inputs_file, out_file = sys.argv[1:]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    assert not type(model).__module__.startswith("tireid_hf"), type(model).__module__
    inputs = torch.load(inputs_file, weights_only=True)
    with torch.no_grad():
        images = model.get_image_features(inputs["pixel_values"])
        texts = model.get_text_features(inputs["input_ids"], inputs["attention_mask"])
    torch.save({"images": images, "texts": texts, "module": type(model).__module__}, out_file)
    """
)


def remote_code_embeddings(folder, inputs: dict, tmp_path) -> dict:
    """Loads `folder` with `AutoModel.from_pretrained(..., trust_remote_code=True)` in a fresh Python
    where `tireid_hf` cannot be imported and returns its image and text embeddings of `inputs`
    (``pixel_values``, ``input_ids``, ``attention_mask``) and the loaded class' module."""
    torch.save(inputs, tmp_path / "inputs.pt")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": ""}
    subprocess.run([sys.executable, "-c", REMOTE_LOAD, str(folder), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
                   check=True, env=env, cwd=tmp_path)
    return torch.load(tmp_path / "out.pt", weights_only=True)


def assert_remote_code_matches(folder, model, inputs: dict, tmp_path) -> None:
    """The folder, loaded as remote code without tireid_hf, embeds ``inputs`` exactly as ``model`` does."""
    remote = remote_code_embeddings(folder, inputs, tmp_path)
    assert remote["module"].startswith("transformers_modules")
    with torch.no_grad():
        torch.testing.assert_close(remote["images"], model.get_image_features(inputs["pixel_values"]), rtol=0, atol=0)
        torch.testing.assert_close(remote["texts"], model.get_text_features(inputs["input_ids"], inputs["attention_mask"]),
                                   rtol=0, atol=0)


class FakeApi:
    """Stands in for `huggingface_hub.HfApi`: records `create_repo` and `upload_folder` calls (with the
    names of the files the uploaded folder held at that moment, under ``"files"``)."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", dict(kwargs, files=sorted(os.listdir(kwargs["folder_path"])))))
