"""Proof of the method contract: a toy method written as its three files only (config, model, model-card
section) in a temporary folder, registered with ``register_method``, goes through training, evaluation,
``GalleryIndex``, ``tireid push --dry-run`` and a remote-code load without the package."""

import importlib
import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModel

import tireid_hf.modeling
from helpers import assert_remote_code_matches
from tireid_hf.cli import main as tireid
from tireid_hf.data import load_tireid_dataset
from tireid_hf.methods import method_names, register_method, unregister_method
from tireid_hf.processing import TIReIDProcessor
from tireid_hf.retrieval import GalleryIndex, evaluate_split
from tireid_hf.training import main as train
from test_training_run import CONFIG, DATA

CONFIGURATION_TOY = '''
from .configuration_tireid import TIReIDConfig


class ToyConfig(TIReIDConfig):
    """CLIP + a linear text head, trained with SDM."""

    model_type = "tireid-toy"
    sdm_loss_weight: float = 1.0


ToyConfig.register_for_auto_class()
'''
MODELING_TOY = '''
from torch import nn

from .base import TIReIDPreTrainedModel
from .configuration_toy import ToyConfig
from .losses import sdm_loss


class ToyModel(TIReIDPreTrainedModel):
    config_class = ToyConfig

    def __init__(self, config):
        super().__init__(config)
        self.text_head = nn.Linear(config.embed_dim, config.embed_dim)
        self.post_init()

    def text_retrieval_features(self, input_ids, attention_mask):
        return self.text_head(super().text_retrieval_features(input_ids, attention_mask))

    def compute_losses(self, features, pixel_values, input_ids, attention_mask, pids, **batch_inputs):
        return {"sdm": sdm_loss(features.logits_per_text, pids)}


ToyModel.register_for_auto_class("AutoModel")
'''
CARD_SECTION = "## The toy method\n\nCLIP with a linear text head (TOY-CARD-MARKER).\n"


@pytest.fixture
def toy_method(tmp_path, monkeypatch):
    """The toy's files in a folder of their own, beside links to the shared model files (what its
    remote code imports), importable as ``tireid_hf.modeling.modeling_toy``; registered for the test."""
    folder = tmp_path / "toy_code"
    folder.mkdir()
    shared = Path(tireid_hf.modeling.__file__).parent
    for sibling in shared.glob("*.py"):
        if sibling.name != "__init__.py":
            (folder / sibling.name).symlink_to(sibling)
    (folder / "configuration_toy.py").write_text(textwrap.dedent(CONFIGURATION_TOY))
    (folder / "modeling_toy.py").write_text(textwrap.dedent(MODELING_TOY))
    (folder / "toy.md").write_text(CARD_SECTION)
    monkeypatch.setattr(tireid_hf.modeling, "__path__", [*tireid_hf.modeling.__path__, str(folder)])
    module = importlib.import_module("tireid_hf.modeling.modeling_toy")
    register_method("toy", module.ToyConfig, module.ToyModel, card_section=folder / "toy.md")
    yield module
    unregister_method("toy")
    for name in ("modeling_toy", "configuration_toy"):
        sys.modules.pop(f"tireid_hf.modeling.{name}", None)


def test_a_method_of_three_files_trains_evaluates_indexes_pushes_and_loads_as_remote_code(toy_method, tmp_path):
    assert "toy" in method_names()
    config = tmp_path / "toy.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "method": "toy"}))
    out = tmp_path / "out"
    train(["--config", str(config), "--output_dir", str(out), "--max_steps", "6"])
    results = json.loads((out / "results.json").read_text())
    losses = [entry["train/sdm"] for entry in results["history"] if entry["kind"] == "train"]
    assert results["method"] == "toy" and len(losses) == 3 and losses[-1] < losses[0]
    assert {"lr/backbone", "lr/heads"} <= set(results["history"][0])  # the text head is a new module

    model = AutoModel.from_pretrained(out).eval()
    assert isinstance(model, toy_method.ToyModel) and model.config.inference_only
    processor = TIReIDProcessor.from_pretrained(out)
    validation = load_tireid_dataset("synthetic", **DATA)["validation"]
    metrics = evaluate_split(model, processor, validation, show_progress=False)
    assert metrics["t2i/R1"] == pytest.approx(results["best_validation"]["metrics"]["t2i/R1"], abs=1e-4)

    index = GalleryIndex.build(model, processor, validation["image"], show_progress=False)
    caption = validation[0]["captions"][0]
    found = index.search([caption], k=3)
    with torch.no_grad():
        text = model.get_text_features(**processor(text=[caption], return_tensors="pt", padding=True))
        images = model.get_image_features(processor(images=list(validation["image"]), return_tensors="pt")["pixel_values"])
    expected = (text @ images.t())[0].topk(3)
    assert found.indices[0].tolist() == expected.indices.tolist()
    torch.testing.assert_close(found.scores[0], expected.values, rtol=0, atol=1e-5)

    hub = tmp_path / "hub"
    assert tireid(["push", "--model", str(out), "--repo", "org/toy-synthetic", "--dry-run", str(hub)]) == 0
    assert "TOY-CARD-MARKER" in (hub / "README.md").read_text()
    assert {"modeling_toy.py", "configuration_toy.py", "base.py"} <= {path.name for path in hub.glob("*.py")}
    pixels = processor(images=list(validation["image"][:3]), return_tensors="pt")["pixel_values"]
    tokens = processor(text=validation[0]["captions"] + validation[1]["captions"][:1], return_tensors="pt", padding=True)
    assert_remote_code_matches(hub, model, {"pixel_values": pixels, **tokens}, tmp_path, processor=processor)
