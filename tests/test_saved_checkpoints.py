"""Checkpoints saved by an older version of the package (tests/fixtures/saved_checkpoints, made by its
make_checkpoints.py at commit 43532af) still load, with the same weights, embeddings and losses."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

import tireid_hf  # noqa: F401  (registers the Auto classes)

SAVED = Path(__file__).resolve().parent / "fixtures" / "saved_checkpoints"
FOLDERS = sorted(path.name for path in SAVED.iterdir() if path.is_dir())


def test_every_method_has_a_saved_checkpoint():
    from tireid_hf.modeling import METHODS

    assert set(METHODS) <= set(FOLDERS)


@pytest.mark.parametrize("folder", FOLDERS)
def test_checkpoint_saved_by_older_code_loads_and_computes_the_same(folder):
    model, info = AutoModel.from_pretrained(SAVED / folder, output_loading_info=True)  # refuses mismatched weights
    assert not info["missing_keys"] and not info["unexpected_keys"]
    model.eval()
    assert type(model).__module__.startswith("tireid_hf.modeling")
    inputs = load_file(SAVED / "inputs.safetensors")
    expected = load_file(SAVED / folder / "expected.safetensors")
    with torch.no_grad():
        output = model(**inputs)
        torch.testing.assert_close(model.get_image_features(inputs["pixel_values"]), expected["image_features"])
        torch.testing.assert_close(model.get_text_features(inputs["input_ids"], inputs["attention_mask"]),
                                   expected["text_features"])
    assert set(output.losses) == {key.removeprefix("losses.") for key in expected if key.startswith("losses.")}
    for name, value in output.losses.items():
        torch.testing.assert_close(value, expected[f"losses.{name}"], msg=name)
    torch.testing.assert_close(output.loss, expected["loss"])
