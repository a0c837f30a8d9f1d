"""The pretraining corpus, `make base` (tireid_hf.training.pretrain_base) and the committed base."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tireid_hf.data.synthetic import SyntheticConfig, identities_by_split
from tireid_hf.data.synthetic.attributes import sample_identity
from tireid_hf.data.synthetic.pretraining import (
    PretrainingCorpusConfig, pretraining_corpus, render_scene, write_alt_text,
)
from tireid_hf.training.pretrain_base import (
    DEFAULT_BASE, TRAINING_LOG, BasePretrainingConfig, _pixels, corpus_fingerprint, pretrain_base,
)

REPO = Path(__file__).resolve().parent.parent
BASE = REPO / DEFAULT_BASE
LOWER_BODY_ATTRIBUTES = {"lower_colour", "lower_type", "shoes_colour"}
SMALL_PRETRAINING = BasePretrainingConfig(
    num_images=48, num_held_out=16, image_size=16, patch_size=8, epochs=2, batch_size=16,
    vision={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2},
    text={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}, projection_dim=8,
)


def test_corpus_is_deterministic_square_and_differs_by_seed():
    config = PretrainingCorpusConfig(num_images=6, image_size=32)
    images, captions = pretraining_corpus(config)
    again, captions_again = pretraining_corpus(config)
    other, _ = pretraining_corpus(dataclasses.replace(config, seed=config.seed + 1))
    assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8
    assert np.array_equal(images, again) and captions == captions_again
    assert not np.array_equal(images, other)
    assert all(len(per_image) == 2 for per_image in captions)


def test_alt_text_states_one_to_three_visible_attributes_truthfully():
    rng = np.random.default_rng(3)
    groups_seen, close_ups = set(), 0
    for _ in range(300):
        identity = sample_identity(rng)
        truth = identity.as_dict()
        image, visible = render_scene(identity, rng, 32)
        assert image.size == (32, 32)
        close_ups += "lower" not in visible
        caption = write_alt_text(identity, visible, rng)
        assert not caption.text.endswith(".") and len(caption.text.split()) <= 20, caption
        stated = {attribute.split("_")[0] for attribute in caption.mentions if attribute not in ("gender", "build")}
        assert 1 <= len(stated) <= 3, caption
        for attribute, value in caption.mentions.items():
            assert value == truth[attribute] or (value is True and truth[attribute]), (caption, truth)
        if "lower" not in visible:
            assert not LOWER_BODY_ATTRIBUTES & set(caption.mentions), (caption, visible)
        groups_seen |= stated
    assert {"hair", "upper", "lower", "shoes"} <= groups_seen
    assert 40 < close_ups < 120  # one scene in four is a close-up without legs


def test_corpus_identities_are_not_the_benchmarks():
    benchmark = {tuple(vars(i).values())[:-1] for split in identities_by_split(SyntheticConfig()).values() for i in split}
    corpus = {tuple(vars(sample_identity(np.random.default_rng([PretrainingCorpusConfig().seed, i]))).values())[:-1]
              for i in range(2000)}
    assert len(benchmark & corpus) <= 1


def test_pretraining_is_bit_identical_and_loads_with_plain_transformers(tmp_path):
    first = pretrain_base(tmp_path / "a", SMALL_PRETRAINING, progress=False)
    pretrain_base(tmp_path / "b", SMALL_PRETRAINING, progress=False)
    for name in ("model.safetensors", "config.json", "processor_config.json", "tokenizer.json", TRAINING_LOG):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert len(first["epochs"]) == 2 and first["config"] == dataclasses.asdict(SMALL_PRETRAINING)
    # the saved processor gives exactly the pixels the pretraining loop trained on
    images, captions = pretraining_corpus(SMALL_PRETRAINING.corpus_config())
    np.save(tmp_path / "images.npy", images[:3])
    script = f"""
import sys, numpy as np, torch
from transformers import CLIPModel, CLIPProcessor
model = CLIPModel.from_pretrained({str(tmp_path / 'a')!r}); processor = CLIPProcessor.from_pretrained({str(tmp_path / 'a')!r})
assert "tireid_hf" not in sys.modules
pixels = processor(images=list(np.load({str(tmp_path / 'images.npy')!r})), return_tensors="pt")["pixel_values"]
torch.save(pixels, {str(tmp_path / 'pixels.pt')!r})
ids = processor(text=["red jacket"], return_tensors="pt")
print(model.get_text_features(**ids).pooler_output.shape[-1])
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == str(SMALL_PRETRAINING.projection_dim)
    processed = torch.load(tmp_path / "pixels.pt")
    torch.testing.assert_close(processed, _pixels(torch.from_numpy(images[:3])), atol=1e-5, rtol=0)


def test_pretraining_config_errors_and_nothing_left_behind_on_failure(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="image_size 16 must be a multiple of patch_size 5"):
        dataclasses.replace(SMALL_PRETRAINING, patch_size=5)

    def disk_full(self, *args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr("transformers.CLIPProcessor.save_pretrained", disk_full)
    with pytest.raises(OSError, match="No space left"):
        pretrain_base(tmp_path / "base", SMALL_PRETRAINING, progress=False)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------ the committed base
def test_committed_base_is_small_and_made_by_the_current_code():
    files = [path for path in BASE.iterdir() if path.is_file()]
    assert sum(path.stat().st_size for path in files) <= 25 * 2**20
    log = json.loads((BASE / TRAINING_LOG).read_text())
    assert log["config"] == dataclasses.asdict(BasePretrainingConfig()), "make base: the defaults changed since the base was made"
    images, captions = pretraining_corpus(BasePretrainingConfig().corpus_config())
    assert log["corpus_fingerprint"] == corpus_fingerprint(images, captions), "make base: the corpus generator changed"
    chance = 100.0 / log["config"]["num_held_out"]
    assert log["epochs"][-1]["held_out_t2i_R1"] > 10 * chance


def test_committed_base_retrieves_unseen_scenes():
    """The weights, not only the log, learned: zero-shot on 200 scenes of another seed."""
    from transformers import CLIPModel, CLIPProcessor

    model, processor = CLIPModel.from_pretrained(BASE).eval(), CLIPProcessor.from_pretrained(BASE)
    images, captions = pretraining_corpus(PretrainingCorpusConfig(num_images=200, image_size=64, seed=7))
    with torch.no_grad():
        image_embeds = model.get_image_features(**processor(images=list(images), return_tensors="pt")).pooler_output
        text = processor(text=[c[0] for c in captions], return_tensors="pt", padding=True)
        text_embeds = model.get_text_features(**text).pooler_output
    similarity = torch.nn.functional.normalize(text_embeds, dim=-1) @ torch.nn.functional.normalize(image_embeds, dim=-1).T
    recall_at_1 = (similarity.argmax(dim=1) == torch.arange(200)).float().mean().item()
    assert recall_at_1 > 10 / 200  # chance is 1 / 200
