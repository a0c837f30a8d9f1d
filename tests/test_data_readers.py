"""Readers of the CUHK-PEDES, ICFG-PEDES and RSTPReid release formats on tiny generated fixtures."""

import json
import logging

import numpy as np
import pytest
from PIL import Image

from tireid_hf.data import FEATURES, DatasetFormatError, load_tireid_dataset

# (split, original id, number of images) per identity; ids are deliberately sparse and unordered.
LAYOUT = {
    "cuhk-pedes": [("train", 12, 2), ("train", 3, 1), ("train", 40, 2), ("val", 100, 2), ("test", 200, 1), ("test", 201, 2)],
    "icfg-pedes": [("train", i, 2) for i in (5, 9, 11, 20, 31, 42, 57, 60)] + [("test", 300, 1), ("test", 301, 2)],
    "rstpreid": [("train", 7, 2), ("train", 1, 2), ("val", 50, 1), ("test", 60, 2)],
}
ANNOTATION = {"cuhk-pedes": "reid_raw.json", "icfg-pedes": "ICFG-PEDES.json", "rstpreid": "data_captions.json"}
PATH_FIELD = {"cuhk-pedes": "file_path", "icfg-pedes": "file_path", "rstpreid": "img_path"}


def make_release(root, name, layout=None, annotation=None):
    """Writes a tiny release of `name` under `root` (solid-colour PNGs) and returns its records."""
    records = []
    for split, source_id, count in layout or LAYOUT[name]:
        for k in range(count):
            rel = f"{split}/{source_id:04d}_{k}.png"
            (root / "imgs" / split).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 24), (source_id % 256, k * 40, 90)).save(root / "imgs" / rel)
            record = {"split": split, "captions": [f"person {source_id} view {k}", f"second caption {source_id}"],
                      PATH_FIELD[name]: rel, "id": source_id}
            if name != "rstpreid":
                record["processed_tokens"] = [c.split() for c in record["captions"]]
            records.append(record)
    write_annotations(root, annotation or ANNOTATION[name], records)
    return records


def write_annotations(root, file_name, records):
    (root / file_name).write_text(json.dumps(records, indent=1))


@pytest.mark.parametrize("name", ["cuhk-pedes", "rstpreid"])
def test_release_with_val_split(tmp_path, name):
    records = make_release(tmp_path, name)
    ds = load_tireid_dataset(name, tmp_path)
    assert list(ds) == ["train", "validation", "test"]
    for split, raw_split in (("train", "train"), ("validation", "val"), ("test", "test")):
        expected = [r for r in records if r["split"] == raw_split]
        rows = ds[split]
        assert rows.features == FEATURES
        assert rows.num_rows == len(expected)
        assert rows["image_path"] == [f"imgs/{r[PATH_FIELD[name]]}" for r in expected]
        assert rows["captions"] == [r["captions"] for r in expected]
        order = sorted({r["id"] for r in expected})  # pids: contiguous from 0, in original-id order
        assert rows["pid"] == [order.index(r["id"]) for r in expected]
    image = ds["train"][0]["image"]
    assert image.size == (8, 24) and np.asarray(image)[0, 0, 0] == records[0]["id"] % 256


@pytest.mark.parametrize("file_name", ["ICFG-PEDES.json", "ICFG_PEDES.json"])
def test_icfg_carves_a_seeded_validation_split_out_of_train_identities(tmp_path, file_name):
    make_release(tmp_path, "icfg-pedes", annotation=file_name)
    ds = load_tireid_dataset("icfg-pedes", tmp_path, validation_ids=3, split_seed=1)
    ids = {s: {p.split("/")[-1][:4] for p in ds[s]["image_path"]} for s in ds}
    assert len(ids["validation"]) == 3 and len(ids["train"]) == 5 and len(ids["test"]) == 2
    assert not ids["validation"] & ids["train"]
    assert all(p.startswith("imgs/train/") for p in ds["validation"]["image_path"])
    assert sorted(set(ds["train"]["pid"])) == list(range(5)) and sorted(set(ds["validation"]["pid"])) == list(range(3))
    again = load_tireid_dataset("icfg-pedes", tmp_path, validation_ids=3, split_seed=1)
    assert again["validation"]["image_path"] == ds["validation"]["image_path"]
    other_seeds = {tuple(load_tireid_dataset("icfg-pedes", tmp_path, validation_ids=3, split_seed=s)["validation"]["image_path"])
                   for s in range(2, 6)}
    assert len(other_seeds | {tuple(ds["validation"]["image_path"])}) > 1
    default = load_tireid_dataset("icfg-pedes", tmp_path)  # 10% of 8 ids -> 1
    assert len(set(default["validation"]["pid"])) == 1


def test_validation_ids_only_for_icfg(tmp_path):
    make_release(tmp_path, "cuhk-pedes")
    with pytest.raises(ValueError, match="icfg-pedes only"):
        load_tireid_dataset("cuhk-pedes", tmp_path, validation_ids=2)


def test_missing_annotation_file(tmp_path):
    with pytest.raises(DatasetFormatError, match="annotation file not found: .*ICFG-PEDES.json or .*ICFG_PEDES.json"):
        load_tireid_dataset("icfg-pedes", tmp_path)


def test_malformed_json_names_the_record(tmp_path):
    records = make_release(tmp_path, "cuhk-pedes")
    text = json.dumps(records[:3], indent=1)
    broken = text[: text.rindex('"id"')] + '"id": 40,, }]'  # syntax error inside record 2
    (tmp_path / "reid_raw.json").write_text(broken)
    with pytest.raises(DatasetFormatError, match=r"reid_raw.json: malformed JSON in record 2 \(line"):
        load_tireid_dataset("cuhk-pedes", tmp_path)
    (tmp_path / "reid_raw.json").write_text('{"split": "train"}')
    with pytest.raises(DatasetFormatError, match="expected a list of records"):
        load_tireid_dataset("cuhk-pedes", tmp_path)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("captions", None, r"record 1: missing field 'captions'"),
        ("captions", [], r"record 1: field 'captions' must be a non-empty list"),
        ("captions", ["fine", "  "], r"record 1: field 'captions\[1\]' is empty"),
        ("split", "dev", r"record 1: field 'split' is 'dev'"),
        ("id", "abc", r"record 1: field 'id' is 'abc'.*cannot be made contiguous"),
        ("id", 2.5, r"record 1: field 'id' is 2.5"),
        ("id", 100, r"record 2: id 100 is in split 'validation' but record 1 has it in split 'train'"),
        ("img_path", None, r"record 1: missing field 'img_path'"),
    ],
)
def test_bad_record_names_file_record_and_field(tmp_path, field, value, message):
    records = make_release(tmp_path, "rstpreid", layout=[("train", 1, 2), ("val", 100, 1), ("test", 5, 1)])
    if value is None:
        del records[1][field]
    else:
        records[1][field] = value
    write_annotations(tmp_path, "data_captions.json", records)
    with pytest.raises(DatasetFormatError, match=r"data_captions.json: " + message):
        load_tireid_dataset("rstpreid", tmp_path)


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_bad_image_errors_by_default_and_can_be_skipped(tmp_path, caplog, damage):
    records = make_release(tmp_path, "cuhk-pedes")
    bad = tmp_path / "imgs" / records[1]["file_path"]
    if damage == "missing":
        bad.unlink()
    else:
        bad.write_bytes(b"\x89PNG this is not an image")
    with pytest.raises(DatasetFormatError, match=rf"record 1: image .*{records[1]['file_path']} is "
                       + ("missing" if damage == "missing" else "not decodable")):
        load_tireid_dataset("cuhk-pedes", tmp_path)
    with caplog.at_level(logging.WARNING):
        ds = load_tireid_dataset("cuhk-pedes", tmp_path, skip_bad_images=True)
    assert "skipped 1 records" in caplog.text
    assert ds["train"].num_rows == 4 and f"imgs/{records[1]['file_path']}" not in ds["train"]["image_path"]
    assert sorted(set(ds["train"]["pid"])) == [0, 1, 2]


def test_split_left_empty_is_an_error(tmp_path):
    records = make_release(tmp_path, "cuhk-pedes")
    write_annotations(tmp_path, "reid_raw.json", [r for r in records if r["split"] != "val"])
    with pytest.raises(DatasetFormatError, match="no usable record in split 'validation'"):
        load_tireid_dataset("cuhk-pedes", tmp_path)


def test_unknown_name_and_missing_root():
    with pytest.raises(ValueError, match="unknown dataset 'market'"):
        load_tireid_dataset("market", "/nowhere")
    with pytest.raises(ValueError, match="pass root="):
        load_tireid_dataset("cuhk-pedes")


@pytest.mark.parametrize("record, message", [
    ("just a string", r"record 1: expected an object, got str"),
    ({"split": "train", "captions": ["a man"], "img_path": "", "id": 1}, r"record 1: field 'img_path' must be a non-empty string, got ''"),
    ({"split": "train", "captions": ["a man"], "img_path": 5, "id": 1}, r"record 1: field 'img_path' must be a non-empty string, got 5"),
])
def test_record_that_is_not_an_object_or_has_a_bad_path_is_named(tmp_path, record, message):
    records = make_release(tmp_path, "rstpreid", layout=[("train", 1, 2), ("val", 100, 1), ("test", 5, 1)])
    records[1] = record
    write_annotations(tmp_path, "data_captions.json", records)
    with pytest.raises(DatasetFormatError, match=r"data_captions.json: " + message):
        load_tireid_dataset("rstpreid", tmp_path)


def test_undecodable_image_names_the_decoder_error(tmp_path):
    from tireid_hf.data.readers import image_problem

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG this is not an image")
    assert image_problem(bad, verify=True).startswith("not decodable (not an image Pillow can read")
    assert image_problem(bad, verify=False) is None and image_problem(tmp_path / "none.png", verify=True) == "missing"


def test_carve_validation_ids_counts_and_bounds():
    from tireid_hf.data.readers import carve_validation_ids

    ids = [5, 9, 11, 20, 31, 42, 57, 60, 9, 5]  # 8 identities, some twice
    assert len(carve_validation_ids(ids, 0.25, seed=0)) == 2  # a fraction of the identities
    assert len(carve_validation_ids(ids, 0.01, seed=0)) == 1  # at least one
    assert len(carve_validation_ids(ids, 7, seed=0)) == 7 and carve_validation_ids(ids, 3, seed=4) <= set(ids)
    for fraction in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=rf"validation_ids as a fraction must be in \(0, 1\), got {fraction}"):
            carve_validation_ids(ids, fraction, seed=0)
    for count in (0, 8):
        with pytest.raises(ValueError, match=rf"cannot carve {count} validation identities out of 8 train identities"):
            carve_validation_ids(ids, count, seed=0)
