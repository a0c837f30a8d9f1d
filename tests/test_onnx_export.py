"""`tireid export onnx`: the encoders of a zoo model as ONNX, run by onnxruntime with the model interface."""

import json

import pytest
import torch
from PIL import Image

from tester import ModelTester
from tireid_hf.cli import main as tireid
from tireid_hf.retrieval import GalleryIndex, embed_images, embed_texts, model_fingerprint, split_queries

pytest.importorskip("onnxruntime", reason="the onnx extra: pip install 'tireid-hf[onnx]'")
pytest.importorskip("onnxscript", reason="the onnx extra: pip install 'tireid-hf[onnx]'")
from tireid_hf.onnx_export import OnnxEncoders  # noqa: E402


@pytest.fixture(scope="module", params=["clip_reid", "lgur"])
def exported(request, tmp_path_factory, tiny_processor):
    folder = tmp_path_factory.mktemp(request.param)
    model = ModelTester(request.param).model().export_for_inference().eval()
    model.save_pretrained(folder / "model")
    tiny_processor.save_pretrained(folder / "model")
    assert tireid(["export", "onnx", "--model", str(folder / "model"), "--out", str(folder / "onnx"), "--int8"]) == 0
    return model, folder


def test_onnx_encoders_match_the_model_and_rank_alike(exported, small_test_split, tiny_processor):
    model, folder = exported
    encoders = OnnxEncoders(folder / "onnx", expected_fingerprint=model_fingerprint(model))
    texts, _ = split_queries(small_test_split)
    images = small_test_split["image"]
    # batch sizes 3 and 7 leave partial batches: the batch dimension is dynamic, and so is the text length
    onnx_images = embed_images(encoders, tiny_processor, images, batch_size=3, show_progress=False)
    onnx_texts = embed_texts(encoders, tiny_processor, texts, batch_size=7, show_progress=False)
    with torch.inference_mode():
        torch_images = embed_images(model, tiny_processor, images, batch_size=3, show_progress=False)
        torch_texts = embed_texts(model, tiny_processor, texts, batch_size=7, show_progress=False)
    assert (onnx_images - torch_images).abs().max() <= 1e-4 and (onnx_texts - torch_texts).abs().max() <= 1e-4
    index = GalleryIndex.build(model, tiny_processor, images, show_progress=False)
    loaded_with_onnx = GalleryIndex(index.embeddings, fingerprint=index.fingerprint)
    loaded_with_onnx.model, loaded_with_onnx.processor = encoders, tiny_processor
    assert torch.equal(loaded_with_onnx.search(texts, k=10).indices, index.search(texts, k=10).indices)


def test_onnx_folder_states_its_preprocessing_and_fingerprint(exported, tiny_processor, tmp_path):
    model, folder = exported
    config = json.loads((folder / "onnx" / "onnx_config.json").read_text())
    assert config["fingerprint"] == model_fingerprint(model) == model_fingerprint(OnnxEncoders(folder / "onnx"))
    assert config["image_size"] == [tiny_processor.image_processor.size["height"], tiny_processor.image_processor.size["width"]]
    assert config["image_mean"] == list(tiny_processor.image_processor.image_mean)
    readme = (folder / "onnx" / "README.md").read_text()
    assert "pixel_values" in readme and str(config["image_std"]) in readme and config["fingerprint"] in readme
    index = GalleryIndex.build(model, tiny_processor, [Image.new("RGB", (8, 16))], show_progress=False)
    index.save(tmp_path / "index")
    GalleryIndex.load(tmp_path / "index", model=OnnxEncoders(folder / "onnx"))  # the same fingerprint: accepted


def test_int8_encoders_run_and_stay_close(exported, small_test_split, tiny_processor):
    model, folder = exported
    int8 = OnnxEncoders(folder / "onnx", int8=True)
    images = small_test_split["image"]
    quantised = embed_images(int8, tiny_processor, images, show_progress=False)
    with torch.inference_mode():
        reference = embed_images(model, tiny_processor, images, show_progress=False)
    cosine = (quantised * reference).sum(1)
    assert quantised.shape == reference.shape and cosine.min() > 0.9


def test_onnx_folder_of_another_model_or_corrupt_is_refused(exported, tmp_path):
    model, folder = exported
    other = ModelTester("clip_reid").model(seed=1)
    with pytest.raises(ValueError, match="exported from another model"):
        OnnxEncoders(folder / "onnx", expected_fingerprint=model_fingerprint(other))
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in (folder / "onnx").iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    (broken / "text_encoder.onnx").write_bytes(b"not onnx")
    with pytest.raises(ValueError, match=r"text_encoder\.onnx: not a loadable ONNX model"):
        OnnxEncoders(broken)
    with pytest.raises(FileNotFoundError, match="not a folder written by `tireid export onnx`"):
        OnnxEncoders(tmp_path)
    with pytest.raises(SystemExit, match="already exists"):
        tireid(["export", "onnx", "--model", str(folder / "model"), "--out", str(folder / "onnx")])
