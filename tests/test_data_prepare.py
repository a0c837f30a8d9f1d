"""Parquet preparation with embedded images, the dataset card, `tireid data ...` and the Hub push."""

import shutil
import warnings

import numpy as np
import pytest
from huggingface_hub import DatasetCard

from tireid_hf.cli import main
from tireid_hf.data import load_tireid_dataset
from tireid_hf.data.prepare import load_prepared, prepare_dataset
from tireid_hf.data.synthetic import export_cuhk_format
from tireid_hf.hub.dataset_card import render_dataset_card
from tireid_hf.hub.dataset_push import push_dataset
from helpers import FakeApi

SMALL = dict(num_train_ids=6, num_validation_ids=2, num_test_ids=2, images_per_id=3)
SMALL_OPTIONS = [f"--option={k}={v}" for k, v in SMALL.items()]


@pytest.fixture
def raw_root(tmp_path):
    return export_cuhk_format(tmp_path / "raw", **SMALL)


def test_parquet_round_trip_embeds_the_images(tmp_path, raw_root):
    ds = load_tireid_dataset("cuhk-pedes", raw_root)
    expected = {s: [(r["image_path"], r["pid"], r["captions"], np.asarray(r["image"])) for r in ds[s]] for s in ds}
    out = prepare_dataset(ds, tmp_path / "out", name="cuhk-pedes", max_rows_per_shard=7, rows_per_group=3,
                          card=str(render_dataset_card("cuhk-pedes", ds)))
    shutil.rmtree(raw_root)  # the images must now live in the Parquet files
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00003.parquet", "train-00001-of-00003.parquet", "train-00002-of-00003.parquet",
        "validation-00000-of-00001.parquet",
    ]
    back = load_prepared(out)
    for split, rows in expected.items():
        got = back[split]
        assert got.features == ds[split].features
        for (path, pid, captions, pixels), row in zip(rows, got, strict=True):
            assert (row["image_path"], row["pid"], row["captions"]) == (path, pid, captions)
            assert np.array_equal(np.asarray(row["image"]), pixels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left


def test_failure_leaves_nothing_behind_and_keeps_the_old_output(tmp_path, raw_root):
    ds = load_tireid_dataset("cuhk-pedes", raw_root)
    (raw_root / ds["test"][1]["image_path"]).unlink()  # vanishes between loading and preparing
    with pytest.raises(FileNotFoundError):
        prepare_dataset(ds, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("old")
    with pytest.raises(FileExistsError, match="already exists"):
        prepare_dataset(ds, tmp_path / "out")
    with pytest.raises(FileNotFoundError):
        prepare_dataset(ds, tmp_path / "out", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]
    assert (tmp_path / "out" / "keep.txt").read_text() == "old"


def test_dataset_cards():
    ds = load_tireid_dataset("synthetic", **SMALL)
    card = render_dataset_card("synthetic", ds, options={"seed": 3})
    assert card.data.to_dict()["tireid_dataset"] == "synthetic"
    assert card.data.to_dict()["configs"][0]["data_files"][1] == {"split": "validation", "path": "data/validation-*"}
    text = str(card)
    assert "| train | 18 | 6 | 36 |" in text and "`seed=3`" in text
    assert "| `upper_colour` | red, blue," in text and "Redistribution" not in text
    restricted = str(render_dataset_card("rstpreid", ds))
    assert "Redistribution" in restricted and "Attribute vocabulary" not in restricted


def test_cli_prepare_and_export(tmp_path, capsys):
    assert main(["data", "export-synthetic", "--out", str(tmp_path / "raw"), *SMALL_OPTIONS]) == 0
    shutil.copy(tmp_path / "raw" / "reid_raw.json", tmp_path / "raw" / "ICFG_PEDES.json")
    # every record has split train/val/test here, so the ICFG reader keeps the given val split
    assert main(["data", "prepare", "--dataset", "icfg-pedes", "--root", str(tmp_path / "raw"),
                 "--out", str(tmp_path / "icfg")]) == 0
    card = DatasetCard.load(tmp_path / "icfg" / "README.md")
    assert card.data.to_dict()["tireid_dataset"] == "icfg-pedes"
    assert load_prepared(tmp_path / "icfg")["validation"].num_rows == 6
    with pytest.raises(SystemExit, match="already exists"):
        main(["data", "prepare", "--dataset", "icfg-pedes", "--root", str(tmp_path / "raw"), "--out", str(tmp_path / "icfg")])
    (tmp_path / "raw" / "reid_raw.json").write_text("[")
    with pytest.raises(SystemExit, match=r"reid_raw.json: malformed JSON in record 0"):
        main(["data", "prepare", "--dataset", "cuhk-pedes", "--root", str(tmp_path / "raw"), "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()
    assert main(["data", "prepare", "--dataset", "synthetic", "--out", str(tmp_path / "syn"), *SMALL_OPTIONS]) == 0
    assert load_prepared(tmp_path / "syn")["train"].num_rows == 18


def test_push_is_private_by_default_and_warns_for_restricted_datasets(tmp_path, raw_root):
    ds = load_tireid_dataset("cuhk-pedes", raw_root)
    out = prepare_dataset(ds, tmp_path / "out", card=str(render_dataset_card("cuhk-pedes", ds)))
    api = FakeApi()
    with pytest.warns(UserWarning, match="cuhk-pedes may not be redistributed publicly.*private repository"):
        url = push_dataset(out, "org/cuhk", api=api)
    assert url == "https://huggingface.co/datasets/org/cuhk"
    assert api.calls[0] == ("create_repo", "org/cuhk", {"repo_type": "dataset", "private": True, "exist_ok": True})
    assert api.calls[1][1]["folder_path"] == str(out) and api.calls[1][1]["repo_type"] == "dataset"
    with pytest.warns(UserWarning, match="PUBLIC repository"):
        push_dataset(out, "org/cuhk", private=False, api=FakeApi())
    syn = load_tireid_dataset("synthetic", **SMALL)
    syn_out = prepare_dataset(syn, tmp_path / "syn", card=str(render_dataset_card("synthetic", syn)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        push_dataset(syn_out, "org/syn", private=False, api=FakeApi())
    with pytest.raises(FileNotFoundError, match="not a prepared dataset"):
        push_dataset(tmp_path, "org/x", api=FakeApi())
