"""Every stored file of a model folder and of a gallery index, damaged at random (hypothesis): truncated at a
drawn offset, drawn bytes flipped, or a drawn JSON field given a value of another type. Read back through
its one boundary (``load_model_and_processor``, ``GalleryIndex.load``, the photo-folder search's cache),
it either loads (a harmless change) or is refused with the project's own error naming the file — never
another exception's traceback."""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from tester import IMAGE_SIZE, ModelTester

from tireid_hf.errors import TIReIDError
from tireid_hf.loading import load_model_and_processor
from tireid_hf.processing import TIReIDProcessor
from tireid_hf.retrieval import GalleryIndex
from tireid_hf.retrieval.folder_search import FILES_FILE, update_folder_index
from tireid_hf.validation import IndexFormatError, ModelFolderError

# What a drawn JSON field is replaced by: every JSON type, and numbers out of any sane range.
OTHER_VALUES = st.sampled_from([None, "x", "", [], [1, 2, 3], {}, {"a": 1}, True, False, 0, -1, 0.5, -2.5, 10**30,
                                float("nan"), float("inf")])


def json_paths(value, prefix=(), depth=4):
    """Every path (tuple of keys / indices) into the JSON ``value``, down to ``depth`` levels, its
    long lists and objects cut to their first 5 entries."""
    paths = [prefix] if prefix else []
    if depth == 0:
        return paths
    items = list(value.items())[:40] if isinstance(value, dict) else list(enumerate(value))[:5] if isinstance(value, list) else []
    for key, child in items:
        paths += json_paths(child, (*prefix, key), depth - 1)
    return paths


def header_end(data: bytes) -> int:
    """Where a safetensors file's header ends (8 + its stated length)."""
    return 8 + struct.unpack("<Q", data[:8])[0]


@st.composite
def damage(draw, data: bytes, paths: list | None, region: int | None = None):
    """A damaged copy of the file ``data``: truncated, bytes flipped (inside the first ``region`` bytes when
    given), or (for a JSON file, ``paths`` its fields) a field replaced by a value of another type."""
    kinds = ["truncate", "flip"] + (["retype"] * 2 if paths else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "truncate":
        return data[:draw(st.integers(0, len(data) - 1))]
    if kind == "flip":
        damaged = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            damaged[draw(st.integers(0, (region or len(data)) - 1))] ^= draw(st.integers(1, 255))
        return bytes(damaged)
    value = json.loads(data)
    *parents, last = draw(st.sampled_from(paths))
    holder = value
    for key in parents:
        holder = holder[key]
    holder[last] = draw(OTHER_VALUES)
    return json.dumps(value).encode()


def assert_loads_or_names(load, file: Path, errors=(TIReIDError,)):
    """``load()`` returns, or raises one of ``errors`` whose message names ``file``; anything else fails."""
    try:
        load()
    except errors as error:
        assert file.name in str(error), f"{type(error).__name__} does not name {file.name}: {error}"


# ---------------------------------------------------------------------------------------------------
# Model folders: config.json, the processor config, tokenizer files, model.safetensors


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    ModelTester("clip_reid", vocab_size=1000).model().save_pretrained(folder)
    TIReIDProcessor.for_image_size(IMAGE_SIZE).save_pretrained(folder)
    return folder


def damaged_model_loads_or_is_named(model_folder: Path, name: str, data: bytes):
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary) / "model"
        shutil.copytree(model_folder, folder)
        (folder / name).write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert_loads_or_names(lambda: load_model_and_processor(str(folder)), folder / name)


@pytest.mark.parametrize("name", ["config.json", "processor_config.json", "tokenizer_config.json"])
def test_damaged_model_json_loads_or_is_refused_naming_it(model_folder, name):
    data = (model_folder / name).read_bytes()
    paths = json_paths(json.loads(data))

    @given(damage(data, paths))
    def check(damaged):
        damaged_model_loads_or_is_named(model_folder, name, damaged)

    check()


def test_damaged_tokenizer_json_loads_or_is_refused_naming_it(model_folder):
    data = (model_folder / "tokenizer.json").read_bytes()
    paths = [path for path in json_paths(json.loads(data), depth=3) if "vocab" not in path and "merges" not in path]

    @given(damage(data, paths))
    def check(damaged):
        damaged_model_loads_or_is_named(model_folder, "tokenizer.json", damaged)

    check()


def test_damaged_model_safetensors_header_loads_or_is_refused_naming_it(model_folder):
    data = (model_folder / "model.safetensors").read_bytes()

    @given(damage(data, None, region=header_end(data)))
    def check(damaged):
        damaged_model_loads_or_is_named(model_folder, "model.safetensors", damaged)

    check()


@pytest.mark.parametrize("field, value, message", [
    ("hidden_size", 10**12, r"clip_config\.text_config\.hidden_size must be a whole number in \[1, 16384\], got 10+"),
    ("hidden_size", "32", r"clip_config\.text_config\.hidden_size must be a whole number, got '32'"),
    ("hidden_size", 30, r"clip_config\.text_config\.hidden_size \(30\) must be a multiple of num_attention_heads \(4\)"),
    ("num_hidden_layers", 256, None),  # in range; the model's size is what refuses it (below)
    ("hidden_act", "swish2", r"clip_config\.text_config\.hidden_act must be one of \["),
])
def test_config_fields_are_checked_with_their_names(model_folder, tmp_path, field, value, message):
    folder = tmp_path / "model"
    shutil.copytree(model_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    config["clip_config"]["text_config"][field] = value
    if message is None:
        config["clip_config"]["text_config"].update(hidden_size=16384, intermediate_size=65536)
        message = r"clip_config describes a model of about [\d,]+ parameters, more than the 4,000,000,000 allowed"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match=rf"^--model {folder}: {folder / 'config.json'}: " + message):
        load_model_and_processor(str(folder))
    from transformers import AutoModel

    with pytest.raises(ValueError, match=message):  # the same check without tireid's loader
        AutoModel.from_pretrained(folder)


@pytest.mark.parametrize("name, damage_file, message", [
    ("processor_config.json", lambda path: path.write_text(path.read_text().replace('"height": 64', '"height": -64')),
     r"size must be .* whole numbers in \[1, 8192\], got \{'height': -64"),
    ("processor_config.json", lambda path: path.write_text(path.read_text().replace("0.26862954", "NaN")),
     r"image_std must be a list of 3 finite numbers > 0"),
    ("model.safetensors", lambda path: path.write_bytes(path.read_bytes()[:-100]), r"model\.safetensors: not a readable "
     r"safetensors file \(.*truncated"),
    ("model.safetensors", lambda path: path.write_bytes(struct.pack("<Q", 2**40) + path.read_bytes()[8:]),
     r"model\.safetensors: not a readable safetensors file \(its header length 1099511627776 exceeds"),
    ("model.safetensors", lambda path: torch.save({"weight": torch.zeros(2)}, path),
     r"model\.safetensors: not a readable safetensors file \(a pickle or zip archive written by torch\.save"),
    ("model.safetensors", lambda path: path.rename(path.with_name("pytorch_model.bin")),
     r"model\.safetensors is missing \(only the pickle pytorch_model\.bin"),
])
def test_model_files_are_refused_naming_the_file_and_field(model_folder, tmp_path, name, damage_file, message):
    folder = tmp_path / "model"
    shutil.copytree(model_folder, folder)
    damage_file(folder / name)
    with pytest.raises(ModelFolderError, match=rf"^--model {folder}: .*" + message):
        load_model_and_processor(str(folder))


def test_weights_file_missing_a_weight_is_refused(model_folder, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(model_folder, folder)
    data = (folder / "model.safetensors").read_bytes()
    end = header_end(data)
    header = data[8:end].replace(b"token_embedding", b"tokem_embedding")
    (folder / "model.safetensors").write_bytes(data[:8] + header + data[end:])
    with pytest.raises(ModelFolderError, match=r"model\.safetensors lacks 1 of the model's weights .*token_embedding"):
        load_model_and_processor(str(folder))


# ---------------------------------------------------------------------------------------------------
# Saved gallery indexes: index.json, embeddings.safetensors, the int8 copy; the photo-folder cache files.json


@pytest.fixture(scope="module")
def index_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("index")
    embeddings = torch.nn.functional.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    GalleryIndex(embeddings, ids=[f"photo{i}.png" for i in range(6)], precision="int8", rescore=2,
                 fingerprint="tiny:0").save(folder)
    return folder


@pytest.mark.parametrize("name", ["index.json", "embeddings.safetensors", "exact_int8.safetensors"])
def test_damaged_index_file_loads_or_is_refused_naming_it(index_folder, name):
    data = (index_folder / name).read_bytes()
    paths = json_paths(json.loads(data)) if name.endswith(".json") else None

    @given(damage(data, paths, region=None if paths else header_end(data) + 16))
    def check(damaged):
        with tempfile.TemporaryDirectory() as temporary:
            folder = Path(temporary) / "index"
            shutil.copytree(index_folder, folder)
            (folder / name).write_bytes(damaged)
            assert_loads_or_names(lambda: GalleryIndex.load(folder).search_embeddings(torch.eye(8)[:2], k=3),
                                  folder / name, errors=(IndexFormatError,))

    check()


@pytest.mark.parametrize("field, value, message", [
    ("num_items", "6", r"`num_items` must be a whole number >= 1, got '6'"),
    ("dim", -8, r"`dim` must be a whole number >= 1, got -8"),
    ("ids", [[1], [2]], r"`ids` must be a list of strings or whole numbers"),
    ("backend_settings", {"precision": "int4"}, r"`backend_settings\.precision` must be one of \['float32', 'float16', 'int8'\]"),
    ("rescore", 1.5, r"`rescore` must be a whole number >= 0, got 1\.5"),
    ("format_version", True, r"format_version True is not supported"),
])
def test_index_json_fields_are_checked_with_their_names(index_folder, tmp_path, field, value, message):
    shutil.copytree(index_folder, tmp_path / "index")
    metadata = json.loads((tmp_path / "index" / "index.json").read_text())
    metadata[field] = value
    (tmp_path / "index" / "index.json").write_text(json.dumps(metadata))
    with pytest.raises(IndexFormatError, match=r"index\.json: " + message):
        GalleryIndex.load(tmp_path / "index")


def test_embeddings_of_another_shape_than_index_json_are_refused(index_folder, tmp_path):
    from safetensors.torch import save_file

    shutil.copytree(index_folder, tmp_path / "index")
    save_file({"embeddings": torch.zeros(6, 8, dtype=torch.float16)}, tmp_path / "index" / "embeddings.safetensors")
    with pytest.raises(IndexFormatError, match=r"embeddings\.safetensors: expected the tensors embeddings F32 \[6, 8\], "
                                               r"got embeddings F16 \[6, 8\]"):
        GalleryIndex.load(tmp_path / "index")


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for number, colour in enumerate(["red", "green", "blue"]):
        Image.new("RGB", (16, 32), colour).save(folder / f"{number}.png")
    model = ModelTester("clip_reid", vocab_size=1000).model().export_for_inference().eval()
    processor = TIReIDProcessor.for_image_size(IMAGE_SIZE)
    update_folder_index(model, processor, folder, show_progress=False)
    return folder, model, processor


def test_damaged_search_cache_is_rebuilt_with_a_warning_naming_it(photo_folder):
    folder, model, processor = photo_folder
    cache = folder / ".tireid-index"
    data = (cache / FILES_FILE).read_bytes()

    @given(damage(data, json_paths(json.loads(data))))
    def check(damaged):
        with tempfile.TemporaryDirectory() as temporary:
            photos = Path(temporary) / "photos"
            shutil.copytree(folder, photos)
            (photos / ".tireid-index" / FILES_FILE).write_bytes(damaged)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = update_folder_index(model, processor, photos, show_progress=False)
            assert len(result.index) == 3
            assert all(FILES_FILE in str(warning.message) for warning in caught)
            assert not caught or len(result.embedded) == 3  # a refused cache: every photo embedded again

    check()
