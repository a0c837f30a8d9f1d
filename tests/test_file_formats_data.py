"""Every file format read from training checkpoints, datasets and images, damaged at random (truncated,
bytes flipped, values of another type): each either loads or raises only the project's own error type,
naming the file. Valid files are built once per module; hypothesis runs the suite's ``ci`` profile."""

import dataclasses
import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tester import ModelTester
from test_data_readers import ANNOTATION, PATH_FIELD, make_release
from tireid_hf.data import DatasetFormatError, load_tireid_dataset
from tireid_hf.data.prepare import prepare_dataset
from tireid_hf.data.readers import read_raw_dataset
from tireid_hf.errors import TIReIDInputError
from tireid_hf.images import ImageFileError, read_image
from tireid_hf.training.checkpoints import (MANIFEST_FILE, PROGRESS_FILE, CheckpointError, TrainingProgress,
                                            check_model_config, verify_checkpoint, write_manifest)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


@st.composite
def damaged(draw, data: bytes) -> bytes:
    """``data`` truncated, or with one to four bytes replaced."""
    if draw(st.booleans()):
        return data[:draw(st.integers(0, len(data) - 1))]
    damaged_data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        damaged_data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(damaged_data)


def _json_path(draw, value, depth: int = 3) -> list:
    """A path of keys/indices into ``value``, stopping anywhere."""
    path = []
    while depth and isinstance(value, (dict, list)) and value and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value) if isinstance(value, dict) else range(len(value))))
        path.append(key)
        value, depth = value[key], depth - 1
    return path


@st.composite
def retyped(draw, document):
    """``document`` (JSON) with one value somewhere (or the whole) replaced by a JSON value of any type."""
    document = json.loads(json.dumps(document))
    path = _json_path(draw, document, depth=4)
    replacement = draw(JSON_VALUES)
    if not path:
        return replacement
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = replacement
    return document


def _json_text(document) -> str:
    return json.dumps(document, allow_nan=True)


# ------------------------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint folder: two state files, its manifest and a progress file of a run with history."""
    folder = tmp_path_factory.mktemp("checkpoint-6")
    (folder / "model.safetensors").write_bytes(b"\x00weights" * 10)
    (folder / "optimizer.bin").write_bytes(b"moments" * 5)
    validation = {"kind": "validation", "stage": 0, "epoch": 0, "step": 6, "metrics": {"t2i/R1": 50.0, "t2i/mAP": 40.5}}
    progress = TrainingProgress(method="clip_reid", epoch=1, stage_step=6, global_step=6, best=validation,
                                history=[{"kind": "train", "stage": 0, "epoch": 0, "step": 2, "train/loss": 3.5},
                                         validation],
                                scheduler_state={"base_lrs": [0.001], "last_epoch": 6, "_step_count": 7},
                                loss_window={"loss": [2.0, 1.5]}, model_config=ModelTester("clip_reid").config().to_dict())
    progress.save(folder)
    write_manifest(folder)
    return folder


def _copy(folder: Path, tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("damaged") / folder.name
    shutil.copytree(folder, copy)
    return copy


def _loads_progress_or_names_it(folder: Path) -> None:
    try:
        progress = TrainingProgress.load(folder)
    except CheckpointError as error:
        assert str(folder / PROGRESS_FILE) in str(error)
        return
    progress.last_train_loss()  # what the loop reads of a loaded progress works
    json.dumps(dataclasses.asdict(progress))


@given(data=st.data())
def test_damaged_progress_json_loads_or_is_refused_naming_it(checkpoint, tmp_path_factory, data):
    folder = _copy(checkpoint, tmp_path_factory)
    path = folder / PROGRESS_FILE
    if data.draw(st.booleans()):
        path.write_bytes(data.draw(damaged(path.read_bytes())))
    else:
        path.write_text(_json_text(data.draw(retyped(json.loads(path.read_text())))))
    _loads_progress_or_names_it(folder)


@pytest.mark.parametrize("field, value, message", [
    ("global_step", -1, "field 'global_step' must be an integer >= 0, got -1"),
    ("epoch", "3", "field 'epoch' must be an integer >= 0, got '3'"),
    ("stage_index", True, "field 'stage_index' must be an integer >= 0, got True"),
    ("train_runtime_seconds", float("inf"), "field 'train_runtime_seconds' must be a finite number >= 0"),
    ("history", [{"kind": "train"}], "field 'history' must be a list of train and validation records"),
    ("scheduler_state", {"last_epoch": "6"}, "field 'scheduler_state' must be null or a learning-rate schedule"),
    ("loss_window", {"loss": "1.0"}, "field 'loss_window' must be an object of lists of losses"),
    ("surprise", 1, r"unknown field\(s\) \['surprise'\]"),
])
def test_progress_json_fields_are_checked(checkpoint, tmp_path_factory, field, value, message):
    folder = _copy(checkpoint, tmp_path_factory)
    path = folder / PROGRESS_FILE
    path.write_text(_json_text({**json.loads(path.read_text()), field: value}))
    with pytest.raises(CheckpointError, match=f"^{path}: {message}"):
        TrainingProgress.load(folder)


@given(data=st.data())
def test_damaged_manifest_verifies_or_is_refused_naming_the_checkpoint(checkpoint, tmp_path_factory, data):
    folder = _copy(checkpoint, tmp_path_factory)
    path = folder / MANIFEST_FILE
    if data.draw(st.booleans()):
        path.write_bytes(data.draw(damaged(path.read_bytes())))
    else:
        path.write_text(_json_text(data.draw(retyped(json.loads(path.read_text())))))
    try:
        verify_checkpoint(folder)
    except CheckpointError as error:
        assert str(folder) in str(error)


@pytest.mark.parametrize("entry, message", [
    ({"bytes": "80", "sha256": "0" * 64}, "field 'bytes' must be an integer >= 0, got '80'"),
    ({"bytes": 80, "sha256": "xyz"}, "field 'sha256' must be 64 lowercase hex digits, got 'xyz'"),
    ({"bytes": 80}, "must be an object with exactly 'bytes' and 'sha256'"),
])
def test_manifest_entries_are_checked(checkpoint, tmp_path_factory, entry, message):
    folder = _copy(checkpoint, tmp_path_factory)
    path = folder / MANIFEST_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), "model.safetensors": entry}))
    with pytest.raises(CheckpointError, match=f"^{path}: entry 'model.safetensors'.*{message}"):
        verify_checkpoint(folder)
    path.write_text(json.dumps({"../outside.bin": {"bytes": 1, "sha256": "0" * 64}}))
    with pytest.raises(CheckpointError, match=r"entry '../outside.bin' is not a file name inside the checkpoint"):
        verify_checkpoint(folder)


def test_a_checkpoint_of_another_config_is_refused_listing_the_differences(checkpoint):
    progress = TrainingProgress.load(checkpoint)
    other = ModelTester("clip_reid", num_ids=5).config(id_loss_weight=0.5)
    with pytest.raises(CheckpointError, match=rf"^{checkpoint / PROGRESS_FILE}: the checkpoint was written by a model "
                       r"of another configuration \(id_loss_weight: 1.0 in the checkpoint, 0.5 now; num_ids: 3 in the "
                       r"checkpoint, 5 now\)"):
        check_model_config(progress, other, checkpoint)
    same = ModelTester("clip_reid").config()
    check_model_config(progress, same, checkpoint)
    assert progress.model_config == json.loads(json.dumps(same.to_dict()))


# -------------------------------------------------------------------------------------------- datasets


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A prepared dataset folder (Parquet shards with embedded images) of a small synthetic dataset."""
    dataset = load_tireid_dataset("synthetic", num_train_ids=3, num_validation_ids=2, num_test_ids=2, images_per_id=2,
                                  image_height=16, image_width=8, seed=3)
    return prepare_dataset(dataset, tmp_path_factory.mktemp("prepared") / "out")


@settings(max_examples=12)
@given(data=st.data())
def test_damaged_parquet_shard_loads_or_is_refused_naming_it(prepared, tmp_path_factory, data):
    folder = _copy(prepared, tmp_path_factory)
    shard = data.draw(st.sampled_from(sorted(folder.rglob("*.parquet"))))
    shard.write_bytes(data.draw(damaged(shard.read_bytes())))
    try:
        load_tireid_dataset(str(folder))
    except DatasetFormatError as error:
        assert str(folder) in str(error)


@st.composite
def damaged_annotation(draw, records):
    if draw(st.booleans()):
        return draw(damaged(_json_text(records).encode()))
    return _json_text(draw(retyped(records))).encode()


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    return {name: (root, make_release(root, name)) for name in ANNOTATION
            for root in [tmp_path_factory.mktemp(name)]}


@pytest.mark.parametrize("name", sorted(ANNOTATION))
@settings(max_examples=25)
@given(data=st.data())
def test_damaged_annotation_json_loads_or_is_refused_naming_it(releases, name, data):
    root, records = releases[name]
    path = root / ANNOTATION[name]
    original = path.read_bytes()
    path.write_bytes(data.draw(damaged_annotation(records)))
    try:
        read_raw_dataset(name, root, verify_images=False, validation_ids=1)
    except DatasetFormatError as error:
        assert str(path) in str(error)
    finally:
        path.write_bytes(original)


@pytest.mark.parametrize("value, message", [
    (["train"], "field 'split' is \\['train'\\], expected one of"),
    ("--5", "field 'id' is '--5', which is not an integer"),
])
def test_annotation_fields_of_the_wrong_type_are_named(releases, value, message):
    root, records = releases["cuhk-pedes"]
    path = root / ANNOTATION["cuhk-pedes"]
    field = "split" if isinstance(value, list) else "id"
    original = path.read_bytes()
    path.write_text(json.dumps([{**records[0], field: value}, *records[1:]]))
    try:
        with pytest.raises(DatasetFormatError, match=f"^{path}: record 0: {message}"):
            read_raw_dataset("cuhk-pedes", root, verify_images=False)
    finally:
        path.write_bytes(original)


# ---------------------------------------------------------------------------------------------- images


def _encoded(image_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (24, 16, 3), dtype=np.uint8)).save(buffer, format=image_format)
    return buffer.getvalue()


IMAGES = {image_format: _encoded(image_format) for image_format in ("PNG", "JPEG")}


@pytest.mark.parametrize("image_format", sorted(IMAGES))
@given(data=st.data())
def test_damaged_image_decodes_or_is_refused_naming_it(image_format, data):
    try:
        image = read_image(io.BytesIO(data.draw(damaged(IMAGES[image_format]))), f"photo.{image_format.lower()}")
    except ImageFileError as error:
        assert str(error).startswith(f"photo.{image_format.lower()}: ")
    else:
        assert image.mode == "RGB"


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` pixels (its data is empty: Pillow checks the size first)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [10_000, 100_000])  # above Pillow's warning limit; above its error limit
def test_a_decompression_bomb_is_refused_by_every_reader(tmp_path, side):
    from test_space import app
    from tireid_hf.data.readers import image_problem

    bomb = tmp_path / "gallery" / "bomb.png"
    bomb.parent.mkdir()
    bomb.write_bytes(png_declaring(side, side))
    with pytest.raises(ImageFileError, match=rf"^{bomb}: declares more pixels than the \d+ an image may have"):
        read_image(bomb)
    assert image_problem(bomb, verify=True).startswith("not decodable (declares more pixels")
    with pytest.raises(TIReIDInputError, match=rf"^--gallery {bomb.parent}: bomb.png: declares more pixels"):
        app.load_gallery(str(bomb.parent))


def test_tireid_search_skips_a_decompression_bomb(tmp_path, tiny_processor):
    from tireid_hf.retrieval.folder_search import update_folder_index

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(png_declaring(100_000, 100_000))
    Image.new("RGB", (8, 16), (200, 10, 10)).save(folder / "person.png")
    model = ModelTester("clip_reid").model().eval()
    with pytest.warns(UserWarning, match=r"bomb\.png: not a readable image, skipped \(declares more pixels"):
        result = update_folder_index(model, tiny_processor, folder, show_progress=False)
    assert [name for name, _ in result.skipped] == ["bomb.png"] and result.index.ids == ["person.png"]


def test_a_scheduler_state_with_base_rates_of_the_wrong_type_is_named(tmp_path):
    """``base_lrs`` may be left out (the run's own rates stay), but where given it is a list of numbers."""
    TrainingProgress(method="clip_reid", scheduler_state={"last_epoch": 3}).save(tmp_path)
    assert TrainingProgress.load(tmp_path).scheduler_state == {"last_epoch": 3}
    TrainingProgress(method="clip_reid", scheduler_state={"last_epoch": 3, "base_lrs": ["fast"]}).save(tmp_path)
    with pytest.raises(CheckpointError, match=r"progress\.json: field 'scheduler_state' must be null or a learning-rate"):
        TrainingProgress.load(tmp_path)
