"""Helpers shared by several test files: loading a folder as remote code in a fresh process, and a
fake `HfApi` recording the calls a push would make."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap

import torch
from PIL import Image

REMOTE_LOAD = textwrap.dedent(
    """
    import os, sys
    import torch
    from transformers import AutoModel, AutoProcessor
    folder, inputs_file, out_file = sys.argv[1:]
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    assert not type(model).__module__.startswith("tireid_hf"), type(model).__module__
    inputs = torch.load(inputs_file, weights_only=True)
    with torch.no_grad():
        images = model.get_image_features(inputs["pixel_values"])
        texts = model.get_text_features(inputs["input_ids"], inputs["attention_mask"])
    out = {"images": images, "texts": texts, "module": type(model).__module__}
    if os.path.isfile(os.path.join(folder, "processor_config.json")):
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        out["processor_module"] = type(processor).__module__
        out["processed"] = dict(processor(text=PROCESSOR_TEXTS, images=processor_images(), return_tensors="pt"))
    torch.save(out, out_file)
    """
)
PROCESSOR_TEXTS = ["a woman in a red coat", "a man with a black backpack and grey shoes"]


def processor_images():
    """Two small images of different sizes and colours (the remote process builds them the same way)."""
    gradient = Image.linear_gradient("L").resize((48, 100))
    return [Image.merge("RGB", (gradient, gradient.rotate(90), gradient.transpose(Image.FLIP_TOP_BOTTOM))),
            Image.new("RGB", (30, 70), (200, 30, 40))]


# What the remote process needs to build the same processor inputs.
PROCESSOR_CHECK = f"from PIL import Image\nPROCESSOR_TEXTS = {PROCESSOR_TEXTS!r}\n\n" + inspect.getsource(processor_images)


def remote_code_embeddings(folder, inputs: dict, tmp_path) -> dict:
    """Loads `folder` with `AutoModel.from_pretrained(..., trust_remote_code=True)` in a fresh Python
    where `tireid_hf` cannot be imported and returns its image and text embeddings of `inputs`
    (``pixel_values``, ``input_ids``, ``attention_mask``) and the loaded class' module; where the folder
    holds a processor, also `AutoProcessor.from_pretrained(..., trust_remote_code=True)`'s module and its
    output (``processed``) for PROCESSOR_TEXTS and processor_images()."""
    torch.save(inputs, tmp_path / "inputs.pt")
    run_without_tireid_hf(PROCESSOR_CHECK + REMOTE_LOAD, [folder, tmp_path / "inputs.pt", tmp_path / "out.pt"], tmp_path)
    return torch.load(tmp_path / "out.pt", weights_only=True)


def run_without_tireid_hf(code: str, args, tmp_path) -> None:
    """Runs ``code`` with ``args`` in a fresh Python in ``tmp_path`` where ``tireid_hf`` cannot be
    imported (only remote code may run), with its own module caches there (transformers' and evaluate's)."""
    # the same thread count as this process: a different one changes the floats' rounding, not the model
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": "",
           "OMP_NUM_THREADS": str(torch.get_num_threads())}
    blocked = 'import sys\nsys.modules["tireid_hf"] = None  # the package must not be importable\n'
    subprocess.run([sys.executable, "-c", blocked + code, *map(str, args)], check=True, env=env, cwd=tmp_path)


def assert_remote_code_matches(folder, model, inputs: dict, tmp_path, processor=None) -> None:
    """The folder, loaded as remote code without tireid_hf, embeds ``inputs`` exactly as ``model`` does;
    with ``processor``, its AutoProcessor is the full processor and processes texts and images exactly
    as ``processor`` does."""
    remote = remote_code_embeddings(folder, inputs, tmp_path)
    assert remote["module"].startswith("transformers_modules")
    with torch.no_grad():
        torch.testing.assert_close(remote["images"], model.get_image_features(inputs["pixel_values"]), rtol=0, atol=0)
        torch.testing.assert_close(remote["texts"], model.get_text_features(inputs["input_ids"], inputs["attention_mask"]),
                                   rtol=0, atol=0)
    if processor is not None:
        assert remote["processor_module"].startswith("transformers_modules"), remote["processor_module"]
        expected = processor(text=PROCESSOR_TEXTS, images=processor_images(), return_tensors="pt")
        assert set(remote["processed"]) == set(expected) == {"input_ids", "attention_mask", "pixel_values"}
        for key, value in expected.items():
            torch.testing.assert_close(remote["processed"][key], value, rtol=0, atol=0, msg=key)


class FakeApi:
    """Stands in for `huggingface_hub.HfApi`: records `create_repo` and `upload_folder` calls (with the
    names of the files the uploaded folder held at that moment, under ``"files"``)."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", dict(kwargs, files=sorted(os.listdir(kwargs["folder_path"])))))
