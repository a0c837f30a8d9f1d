"""Any HF dataset trains and evaluates: a `tireid data prepare` folder, the `tireid data push --dry-run`
folder read by `datasets.load_dataset`, and photos in the `imagefolder` layout (metadata.jsonl / .csv);
bad input is refused with the file, split, row and column."""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from datasets import load_dataset
from PIL import Image

from test_training_run import REPO, write_config
from tireid_hf.cli import main as tireid
from tireid_hf.data import FEATURES, DatasetFormatError, load_tireid_dataset, parse_column_mapping
from tireid_hf.data.collators import add_word_spans
from tireid_hf.data.synthetic import export_cuhk_format
from tireid_hf.retrieval import GalleryIndex
from tireid_hf.training import main as train, parse_training_arguments

# 8 train identities x 2 images x 2 captions = 32 pairs = 4 batches of 8: max_steps 4 is one epoch.
DATA = dict(num_train_ids=8, num_validation_ids=3, num_test_ids=3, images_per_id=2, image_height=64, image_width=32,
            seed=3)
EVAL_BATCH = "16"  # the per_device_eval_batch_size of test_training_run.CONFIG: the same batches, the same floats


def train_on(folder: Path, dataset: str, *extra: str) -> dict:
    config = write_config(folder, dataset=dataset, dataset_options={})
    train(["--config", str(config), "--output_dir", str(folder / "out"), "--max_steps", "4", *extra])
    return json.loads((folder / "out" / "results.json").read_text())


def evaluate(model: Path, out: Path, *dataset_arguments: str) -> dict:
    assert tireid(["evaluate", "--model", str(model), "--batch-size", EVAL_BATCH, "--output", str(out),
                   *dataset_arguments]) == 0
    return json.loads(out.read_text())["metrics"]


def write_photos(folder: Path, rows, *, pid_offset: int = 0, metadata: str = "jsonl", caption_column: str = "captions",
                 pid_column: str = "pid") -> Path:
    """Saves the rows' images as PNG files in ``folder`` with the metadata file `imagefolder` reads."""
    folder.mkdir(parents=True)
    records = []
    for i, row in enumerate(rows):
        row["image"].save(folder / f"{i:03d}.png")
        captions = row["captions"] if caption_column == "captions" else row["captions"][0]
        records.append({"file_name": f"{i:03d}.png", caption_column: captions, pid_column: row["pid"] + pid_offset})
    if metadata == "jsonl":
        (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        with open(folder / "metadata.csv", "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    return folder


@pytest.fixture(scope="module")
def synthetic():
    return load_tireid_dataset("synthetic", **DATA)


@pytest.fixture(scope="module")
def photos(synthetic, tmp_path_factory):
    """The synthetic splits as photos: train/, validation/, test/ with metadata.jsonl, pids unique across splits."""
    root = tmp_path_factory.mktemp("photos") / "photos"
    for offset, split in zip((0, 100, 200), ("train", "validation", "test")):
        write_photos(root / split, synthetic[split], pid_offset=offset)
    return root


def test_prepared_folder_trains_and_evaluates_like_the_raw_reader_to_the_last_digit(tmp_path):
    raw = export_cuhk_format(tmp_path / "raw", **DATA)
    assert tireid(["data", "prepare", "--dataset", "cuhk-pedes", "--root", str(raw), "--out", str(tmp_path / "prep")]) == 0
    results = train_on(tmp_path, str(tmp_path / "prep"))
    assert results["dataset"] == str(tmp_path / "prep") and results["test"]["t2i/num_queries"] == 3 * 2 * 2
    from_prepared = evaluate(tmp_path / "out", tmp_path / "prepared.json", "--dataset", str(tmp_path / "prep"))
    from_raw = evaluate(tmp_path / "out", tmp_path / "raw.json", "--dataset", "cuhk-pedes", "--root", str(raw))
    assert from_prepared == from_raw
    assert {key: results["test"][key] for key in from_raw} == from_raw


def test_save_to_disk_folders_load_and_nothing_is_ever_written_into_them(synthetic, tmp_path):
    synthetic.save_to_disk(tmp_path / "dict")
    synthetic["train"].save_to_disk(tmp_path / "one")
    before = sorted(tmp_path.rglob("*"))
    back = load_tireid_dataset(str(tmp_path / "dict"))
    for split in synthetic:
        assert back[split].features == FEATURES
        assert [back[split][column] for column in ("image_path", "pid", "captions")] == [
            synthetic[split][column] for column in ("image_path", "pid", "captions")]
    add_word_spans(back["train"])  # a map, as training runs for CADA and UIT: it must cache elsewhere
    one = load_tireid_dataset(str(tmp_path / "one"))  # a single split is train: 8 ids -> 6 / 1 / 1
    assert [len(set(one[split]["pid"])) for split in ("train", "validation", "test")] == [6, 1, 1]
    assert sorted(tmp_path.rglob("*")) == before


def test_push_dry_run_folder_loads_with_load_dataset_and_trains(tmp_path, synthetic, capsys):
    options = [f"--option={key}={value}" for key, value in DATA.items()]
    assert tireid(["data", "prepare", "--dataset", "synthetic", "--out", str(tmp_path / "prep"), *options]) == 0
    assert tireid(["data", "push", "--data", str(tmp_path / "prep"), "--repo", "org/people",
                   "--dry-run", str(tmp_path / "repo")]) == 0
    assert f"wrote {tmp_path / 'repo'}" in capsys.readouterr().out
    # the Hub-layout folder as `datasets` reads a dataset repo: README.md's configs name the splits
    hub_view = load_dataset(str(tmp_path / "repo"))
    assert sorted(hub_view) == ["test", "train", "validation"]
    for split in hub_view:
        assert hub_view[split].features == FEATURES
        assert hub_view[split]["captions"] == synthetic[split]["captions"]
        assert hub_view[split]["pid"] == synthetic[split]["pid"]
    results = train_on(tmp_path, str(tmp_path / "repo"))
    assert results["test"]["t2i/num_queries"] == 3 * 2 * 2
    with pytest.raises(SystemExit, match="already exists"):
        tireid(["data", "push", "--data", str(tmp_path / "prep"), "--repo", "org/people", "--dry-run", str(tmp_path / "repo")])


def test_imagefolder_of_generated_photos_trains_evaluates_indexes_and_draws(photos, synthetic, tmp_path):
    results, out = train_on(tmp_path, str(photos)), tmp_path / "out"
    assert results["test"]["t2i/num_queries"] == 3 * 2 * 2
    metrics = evaluate(out, tmp_path / "eval.json", "--dataset", str(photos))
    assert {key: results["test"][key] for key in metrics} == metrics
    dataset = load_tireid_dataset(str(photos))
    assert dataset["test"]["pid"] == synthetic["test"]["pid"]  # 200, 200, 201, ... -> 0, 0, 1, ...
    assert dataset["test"]["image_path"][:2] == ["test/000.png", "test/001.png"]
    assert np.array_equal(np.asarray(dataset["test"][3]["image"]), np.asarray(synthetic["test"][3]["image"]))
    assert tireid(["index", "build", "--model", str(out), "--dataset", str(photos), "--out", str(tmp_path / "index")]) == 0
    assert GalleryIndex.load(tmp_path / "index").ids[:2] == ["test/000.png", "test/001.png"]
    assert tireid(["visualize", "--model", str(out), "--dataset", str(photos), "--text", "a man in a red coat", "--k", "3"]) == 0
    with Image.open(out / "ranked_results_photos_test.png") as figure:  # the folder's name in the default file name
        assert figure.width > 3 * 32


def test_metadata_csv_with_mapped_columns_and_only_train_is_carved_by_identity(synthetic, tmp_path):
    rows = [row for split in ("train", "validation") for row in synthetic[split].map(
        lambda r, offset=100 * (split == "validation"): {"pid": r["pid"] + offset})]  # 11 identities
    folder = write_photos(tmp_path / "mine", rows, metadata="csv", caption_column="description",
                          pid_column="person_id")
    mapping = "caption=description,pid=person_id"
    dataset = load_tireid_dataset(str(folder), column_mapping=mapping)
    # max(1, round(0.1 * 11)) = 1 identity each: test is the first of a seed-0 permutation of the 11 sorted ids,
    # validation the first of a seed-0 permutation of the 10 left
    ids = [0, 1, 2, 3, 4, 5, 6, 7, 100, 101, 102]
    test_id = ids[np.random.default_rng(0).permutation(11)[0]]
    left = [i for i in ids if i != test_id]
    validation_id = left[np.random.default_rng(0).permutation(10)[0]]
    source_ids = [r["pid"] for r in rows]
    for split, kept in (("test", [test_id]), ("validation", [validation_id]),
                        ("train", [i for i in left if i != validation_id])):
        expected_rows = [i for i, pid in enumerate(source_ids) if pid in kept]
        assert dataset[split]["image_path"] == [f"{i:03d}.png" for i in expected_rows]
        assert dataset[split]["captions"] == [[rows[i]["captions"][0]] for i in expected_rows]
        assert dataset[split]["pid"] == [kept.index(source_ids[i]) for i in expected_rows]
    results = train_on(tmp_path, str(folder), "--column_mapping", mapping)
    assert results["test"]["t2i/num_queries"] == 2  # one identity x 2 images x 1 caption
    metrics = evaluate(tmp_path / "out", tmp_path / "eval.json", "--dataset", str(folder), "--column-mapping", mapping)
    assert {key: results["test"][key] for key in metrics} == metrics
    with pytest.raises(SystemExit, match="no caption column.*column_mapping caption=<column>"):
        tireid(["evaluate", "--model", str(tmp_path / "out"), "--dataset", str(folder)])


def test_train_py_takes_a_column_mapping_and_refuses_a_root_for_a_folder(tmp_path):
    _, data, _ = parse_training_arguments(["--dataset", str(tmp_path), "--column_mapping", "caption=text,pid=person"])
    assert data.column_mapping == {"caption": "text", "pid": "person"}
    # a synthetic config's dataset options describe its dataset: --dataset naming another drops them
    config = str(REPO / "configs" / "clip_reid_synthetic.yaml")
    model, data, training = parse_training_arguments(["--config", config, "--dataset", str(tmp_path)])
    epochs = yaml.safe_load(Path(config).read_text())["num_train_epochs"]  # the rest of the config is kept
    assert (data.dataset, data.dataset_options, model.clip_name_or_path, training.num_train_epochs) == (
        str(tmp_path), {}, "bases/clip-synthetic", epochs)
    _, data, _ = parse_training_arguments(["--config", config, "--dataset", "synthetic"])
    assert data.dataset_options == {"num_train_ids": 1000, "num_validation_ids": 250, "num_test_ids": 250}
    with pytest.raises(ValueError, match="--data_root applies to cuhk-pedes, icfg-pedes, rstpreid"):
        parse_training_arguments(["--dataset", str(tmp_path), "--data_root", str(tmp_path)])
    with pytest.raises(ValueError, match=r"dataset_options \['num_train_ids'\] do not apply to .*; a dataset folder or "
                       "Hub dataset takes validation_fraction, test_fraction, split_seed, verify_images"):
        parse_training_arguments(["--dataset", str(tmp_path), "--dataset_options", '{"num_train_ids": 5}'])
    with pytest.raises(ValueError, match="column_mapping applies to dataset folders and Hub datasets, not to synthetic"):
        parse_training_arguments(["--column_mapping", "pid=person"])
    with pytest.raises(ValueError, match="column_mapping: unknown zoo column.*'identity'"):
        parse_column_mapping("identity=person")
    with pytest.raises(ValueError, match="expects ZOO_COLUMN=YOUR_COLUMN pairs.*got 'caption'"):
        parse_column_mapping("caption")


def test_options_of_another_dataset_are_named(tmp_path):
    with pytest.raises(ValueError, match=rf"dataset option\(s\) \['num_train_ids'\] do not apply to {tmp_path}; a "
                       "dataset folder or Hub dataset takes validation_fraction, test_fraction, split_seed, verify_images"):
        load_tireid_dataset(str(tmp_path), num_train_ids=5)


def test_an_unknown_name_offline_names_the_id_and_the_known_names():
    with pytest.raises(DatasetFormatError, match=r"unknown dataset 'org/people': not one of cuhk-pedes, icfg-pedes, "
                       r"rstpreid, synthetic, not a local folder, .*Hub dataset id \(.*OfflineModeIsEnabled"):
        load_tireid_dataset("org/people")


@pytest.fixture
def small_photos(synthetic, tmp_path):
    """train/ (identities 0..7) and test/ (100..102) folders of photos with metadata.jsonl."""
    write_photos(tmp_path / "p" / "train", synthetic["train"])
    write_photos(tmp_path / "p" / "test", synthetic["test"], pid_offset=100)
    return tmp_path / "p"


def edit_metadata(folder: Path, row: int, **changes) -> Path:
    path = folder / "metadata.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records[row].update(changes)
    for key in [key for key, value in changes.items() if value is None]:
        del records[row][key]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def rewrite_metadata(photos: Path, record) -> None:
    """Rewrites every split's metadata.jsonl with ``record(r)`` for each record ``r``."""
    for metadata in photos.glob("*/metadata.jsonl"):
        records = [json.loads(line) for line in metadata.read_text().splitlines()]
        metadata.write_text("".join(json.dumps(record(r)) + "\n" for r in records))


def test_a_missing_or_mistyped_column_names_the_metadata_file_and_column(small_photos):
    metadata = small_photos / "train" / "metadata.jsonl"
    rewrite_metadata(small_photos, lambda r: {**r, "pid": f"p{r['pid']}"})
    with pytest.raises(DatasetFormatError, match=f"^{metadata}: split 'train': column 'pid' holds .*string.*expected "
                       "integers"):
        load_tireid_dataset(str(small_photos))
    rewrite_metadata(small_photos, lambda r: {"file_name": r["file_name"], "captions": r["captions"], "person": r["pid"]})
    with pytest.raises(DatasetFormatError, match=f"^{metadata}: split 'train': no column 'pid'.*column_mapping pid=<column>"):
        load_tireid_dataset(str(small_photos))
    with pytest.raises(DatasetFormatError, match=f"^{metadata}: split 'train': column_mapping pid=person_id: no column "
                       "'person_id'"):
        load_tireid_dataset(str(small_photos), column_mapping={"pid": "person_id"})
    # one split's metadata differs from the other's: datasets' imagefolder refuses, naming both files
    test_metadata = small_photos / "test" / "metadata.jsonl"
    test_metadata.write_text(test_metadata.read_text().replace('"person"', '"pid"'))
    with pytest.raises(DatasetFormatError, match=f"^{small_photos}: datasets.load_dataset\\('imagefolder'\\) cannot "
                       f"read it: Metadata files .*{test_metadata}.*have different features"):
        load_tireid_dataset(str(small_photos))


def test_an_identity_in_two_splits_names_both_rows(small_photos):
    edit_metadata(small_photos / "test", 4, pid=5)
    with pytest.raises(DatasetFormatError, match=f"^{small_photos / 'test' / 'metadata.jsonl'}: split 'test', row 4: "
                       r"column 'pid' is 5, which split 'train' has too \(row 10\); splits must be identity-disjoint"):
        load_tireid_dataset(str(small_photos))


def test_an_empty_caption_names_the_file_row_and_column(small_photos):
    edit_metadata(small_photos / "train", 6, captions=["a man in a red coat", " \u200b "])
    with pytest.raises(DatasetFormatError, match=f"^{small_photos / 'train' / 'metadata.jsonl'}: split 'train', row 6: "
                       r"column 'captions' \(caption 1\) is empty"):
        load_tireid_dataset(str(small_photos))


def test_an_image_that_does_not_decode_or_leaves_the_folder_names_it(small_photos, tmp_path):
    (small_photos / "test" / "002.png").write_bytes(b"not a png")
    with pytest.raises(DatasetFormatError, match=f"^{small_photos / 'test' / 'metadata.jsonl'}: split 'test', row 2: "
                       f"column 'image': image {small_photos / 'test' / '002.png'} does not decode"):
        load_tireid_dataset(str(small_photos))
    (small_photos / "test" / "002.png").unlink()
    Image.new("RGB", (32, 64)).save(tmp_path / "outside.png")
    os.symlink(tmp_path / "outside.png", small_photos / "test" / "002.png")
    with pytest.raises(DatasetFormatError, match=r"row 2: column 'image': image .*002.png resolves to .*outside.png, "
                       "outside the dataset folder"):
        load_tireid_dataset(str(small_photos))


@pytest.mark.parametrize("name, text", [("metadata.jsonl", "\n \n"), ("metadata.csv", "file_name,caption,pid\n")])
def test_an_empty_metadata_file_is_named(tmp_path, name, text):
    """`imagefolder` itself fails on a metadata file without rows with an IndexError."""
    folder = tmp_path / "photos"
    (folder / "train").mkdir(parents=True)
    Image.new("RGB", (32, 96)).save(folder / "train" / "0.png")
    (folder / "train" / name).write_text(text)
    with pytest.raises(DatasetFormatError, match=rf"{folder / 'train' / name}: no rows"):
        load_tireid_dataset(str(folder))


def test_whatever_datasets_raises_on_a_folder_becomes_a_dataset_error_naming_it(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    (folder / "train-00000.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(DatasetFormatError, match=rf"^{folder}: datasets.load_dataset cannot read it: \S"):
        load_tireid_dataset(str(folder))
