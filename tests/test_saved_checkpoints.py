"""Checkpoints saved by an older version of the package (tests/fixtures/saved_checkpoints, made by its
make_checkpoints.py at commit 43532af) still load, with the same weights, embeddings and losses (the losses
whose defaults became their references' as noted below)."""

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


# Issue 29 made each method's default loss its reference's. A saved checkpoint still embeds exactly as before;
# its losses are the older code's once the named options restore our former forms, except the terms whose
# change has no option: CADA's matching terms (negatives mined on the unnormalised features), LGUR's ID terms
# (now image CE + text CE, twice the former mean of the two) and UIT's restoration (SEN's kept-patch count and
# text input: the former text Linear of the decoder is an unexpected, reported tensor).
FORMER_OPTIONS = {"cada": {"ndf_reduction": "per_row"}, "lgur": {"ranking_hard_fallback": True}}
CHANGED_TERMS = {"cada": {"itm_global", "itm_local", "itm"}, "lgur": {"id_guided", "id_dict"}, "uit": {"tir"}}
DOUBLED_TERMS = {"lgur": {"id_guided", "id_dict"}}
UNEXPECTED = {"uit": {"restoration_decoder.text_embed.1.weight", "restoration_decoder.text_embed.1.bias"}}


@pytest.mark.parametrize("folder", FOLDERS)
def test_checkpoint_saved_by_older_code_loads_and_computes_the_same(folder):
    model, info = AutoModel.from_pretrained(SAVED / folder, output_loading_info=True,  # refuses mismatched weights
                                            **FORMER_OPTIONS.get(folder, {}))
    assert not info["missing_keys"] and set(info["unexpected_keys"]) == UNEXPECTED.get(folder, set())
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
    changed = CHANGED_TERMS.get(folder, set())
    for name, value in output.losses.items():
        if name in DOUBLED_TERMS.get(folder, set()):
            torch.testing.assert_close(value, 2 * expected[f"losses.{name}"], msg=name)
        elif name in changed:
            assert torch.isfinite(value) and not torch.equal(value, expected[f"losses.{name}"]), name
        else:
            torch.testing.assert_close(value, expected[f"losses.{name}"], msg=name)
    if not changed:
        torch.testing.assert_close(output.loss, expected["loss"])


@pytest.mark.parametrize("folder", sorted(FORMER_OPTIONS))
def test_a_saved_checkpoint_embeds_the_same_under_the_reference_defaults(folder):
    model = AutoModel.from_pretrained(SAVED / folder).eval()
    inputs = load_file(SAVED / "inputs.safetensors")
    expected = load_file(SAVED / folder / "expected.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(model.get_image_features(inputs["pixel_values"]), expected["image_features"])
        torch.testing.assert_close(model.get_text_features(inputs["input_ids"], inputs["attention_mask"]),
                                   expected["text_features"])
