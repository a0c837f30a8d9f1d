"""The synthetic pedestrian generator: determinism, disjoint splits, captions true of the identity."""

import io
import re

import numpy as np
import pytest
from PIL import Image

from tireid_hf.data import FEATURES, load_tireid_dataset
from tireid_hf.data.synthetic import (
    VOCABULARY,
    SyntheticConfig,
    export_cuhk_format,
    generate_image,
    identities_by_split,
    identity_attributes,
    iter_examples,
)
from tireid_hf.data.synthetic.attributes import COLOURS, HAIR_COLOURS
from tireid_hf.data.synthetic.captions import write_captions
from tireid_hf.data.synthetic.draw import VIEWS

SMALL = dict(num_train_ids=12, num_validation_ids=4, num_test_ids=4, images_per_id=3, captions_per_image=2)
COLOUR_WORDS = sorted(set(COLOURS) | set(HAIR_COLOURS))


def test_same_seed_same_bytes_other_seed_other_bytes():
    rows = list(iter_examples(SyntheticConfig(**SMALL), "train"))
    again = list(iter_examples(SyntheticConfig(**SMALL), "train"))
    other = list(iter_examples(SyntheticConfig(**SMALL, seed=1), "train"))
    assert [r["image"]["bytes"] for r in rows] == [r["image"]["bytes"] for r in again]
    assert [r["captions"] for r in rows] == [r["captions"] for r in again]
    assert [r["image"]["bytes"] for r in rows] != [r["image"]["bytes"] for r in other]
    assert len({r["image"]["bytes"] for r in rows}) == len(rows)  # every image differs
    # any image can be regenerated alone, in any order
    identity = identities_by_split(SyntheticConfig(**SMALL))["train"][5]
    assert generate_image(identity, SyntheticConfig(**SMALL), "train", 5, 2)[0] == rows[5 * 3 + 2]["image"]["bytes"]


def test_rows_images_and_names():
    rows = list(iter_examples(SyntheticConfig(**SMALL, image_height=96, image_width=32), "validation"))
    assert [r["image_path"] for r in rows[:4]] == ["validation/0000_00.png", "validation/0000_01.png",
                                                  "validation/0000_02.png", "validation/0001_00.png"]
    assert [r["pid"] for r in rows] == [p for p in range(4) for _ in range(3)]
    image = Image.open(io.BytesIO(rows[0]["image"]["bytes"]))
    assert image.format == "PNG" and image.mode == "RGB" and image.size == (32, 96)
    assert all(len(r["captions"]) == 2 for r in rows)


def test_identities_unique_and_splits_disjoint():
    splits = identities_by_split(SyntheticConfig(num_train_ids=300, num_validation_ids=100, num_test_ids=100))
    keys = {s: [tuple(i.as_dict().values()) for i in ids] for s, ids in splits.items()}
    all_keys = [k for ks in keys.values() for k in ks]
    assert len(all_keys) == len(set(all_keys)) == 500
    assert {len(v) for v in keys.values()} == {300, 100}
    for identity in splits["train"]:
        for attribute, value in identity.as_dict().items():
            assert value in VOCABULARY[attribute]
    assert identity_attributes("test", 3, **SMALL) == identities_by_split(SyntheticConfig(**SMALL))["test"][3].as_dict()


def test_every_caption_mention_is_true_of_the_identity():
    rng = np.random.default_rng(0)
    identities = identities_by_split(SyntheticConfig(num_train_ids=150, num_validation_ids=1, num_test_ids=1))["train"]
    mentioned = set()
    for identity in identities:
        truth = identity.as_dict()
        for view in VIEWS:
            for caption in write_captions(identity, view, rng, 3):
                text = caption.text.lower()
                assert caption.text[0].isupper() and caption.text.endswith(".")
                for attribute, value in caption.mentions.items():
                    assert value == truth[attribute] or (value is True and truth[attribute]), (caption, truth)
                    mentioned.add(attribute)
                stated_colours = {v for a, v in caption.mentions.items() if isinstance(v, str) and v in COLOUR_WORDS}
                assert set(re.findall(r"\b(" + "|".join(COLOUR_WORDS) + r")\b", text)) == stated_colours, caption
                words = set(re.findall(r"[a-z-]+", text))
                if words & {"man", "guy", "male", "he"}:
                    assert truth["gender"] == "man", caption
                if words & {"woman", "lady", "girl", "she"}:
                    assert truth["gender"] == "woman", caption
                if "glasses" in text or "spectacles" in text:
                    assert truth["glasses"] and view != "back"
                for bag in ("backpack", "handbag", "hat"):
                    if bag in caption.mentions:
                        assert truth[bag]
    assert mentioned == set(VOCABULARY)  # every attribute gets mentioned somewhere


def test_captions_of_one_image_mention_different_subsets():
    rng = np.random.default_rng(1)
    identities = identities_by_split(SyntheticConfig(num_train_ids=100, num_validation_ids=1, num_test_ids=1))["train"]
    pairs = [write_captions(i, "front", rng, 2) for i in identities]
    differ = sum(set(a.mentions) != set(b.mentions) for a, b in pairs)
    partial = sum(len(c.mentions) < len(c_all) for (c, _), c_all in zip(pairs, (i.as_dict() for i in identities)))
    assert differ > 50 and partial == len(pairs)


def test_load_tireid_dataset_synthetic(tmp_path):
    ds = load_tireid_dataset("synthetic", cache_dir=str(tmp_path), **SMALL)
    assert {s: ds[s].num_rows for s in ds} == {"train": 36, "validation": 12, "test": 12}
    for split in ds:
        assert ds[split].features == FEATURES
        assert sorted(set(ds[split]["pid"])) == list(range(SMALL[f"num_{split}_ids"]))
    row = ds["test"][4]
    assert row["image"].size == (64, 192) and row["image_path"] == "test/0001_01.png" and row["pid"] == 1
    expected = list(iter_examples(SyntheticConfig(**SMALL), "test"))[4]
    assert row["captions"] == expected["captions"]
    with pytest.raises(ValueError, match="takes no root"):
        load_tireid_dataset("synthetic", "/some/root")
    with pytest.raises(ValueError, match="num_train_ids must be a positive int"):
        load_tireid_dataset("synthetic", num_train_ids=0)


def test_export_cuhk_format_reads_back_with_the_cuhk_reader(tmp_path):
    root = export_cuhk_format(tmp_path / "raw", **SMALL)
    ds = load_tireid_dataset("cuhk-pedes", root)
    for split in ("train", "validation", "test"):
        expected = list(iter_examples(SyntheticConfig(**SMALL), split))
        assert ds[split]["image_path"] == ["imgs/" + r["image_path"] for r in expected]
        assert ds[split]["pid"] == [r["pid"] for r in expected]
        assert ds[split]["captions"] == [r["captions"] for r in expected]
    first = np.asarray(ds["train"][0]["image"])
    assert np.array_equal(first, np.asarray(Image.open(io.BytesIO(expected_bytes(SMALL)))))
    with pytest.raises(FileExistsError):
        export_cuhk_format(root, **SMALL)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # no temporary folder left behind


def expected_bytes(config):
    return next(iter_examples(SyntheticConfig(**config), "train"))["image"]["bytes"]
