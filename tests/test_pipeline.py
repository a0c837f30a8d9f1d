"""The "text-to-image-retrieval" pipeline saved beside every model: in a fresh Python WITHOUT tireid_hf,
`pipeline(..., trust_remote_code=True)` ranks a gallery exactly as `GalleryIndex.search` does."""

import json

import pytest
import torch
from PIL import Image
from transformers.pipelines import PIPELINE_REGISTRY

from helpers import run_without_tireid_hf
from tester import ModelTester
from tireid_hf.methods import method_names
from tireid_hf.modeling.pipeline_tireid import TASK, TextToImageRetrievalPipeline
from tireid_hf.retrieval import GalleryIndex

TEXTS = ["a woman in a red coat", "a man with a black backpack", "grey shoes"]

REMOTE_PIPELINE = """
import json
from transformers import pipeline
folder, images_file, out_file = sys.argv[1:]
images = json.loads(open(images_file).read())
retrieve = pipeline("text-to-image-retrieval", model=folder, trust_remote_code=True)
assert type(retrieve).__module__.startswith("transformers_modules"), type(retrieve).__module__
assert type(retrieve.model).__module__.startswith("transformers_modules"), type(retrieve.model).__module__
texts = {texts!r}
out = {{"batch": retrieve(texts, images=images, top_k=3), "single": retrieve(texts[0], images=images, top_k=50)}}
open(out_file, "w").write(json.dumps(out))
""".format(texts=TEXTS)


def gallery(tmp_path, count=7):
    """``count`` small images of different colours and sizes, saved as PNG files: ``(paths, PIL images)``."""
    paths, images = [], []
    for i in range(count):
        image = Image.new("RGB", (20 + 3 * i, 40 + 5 * i), (30 * i % 256, 255 - 20 * i, 60 + 25 * i))
        image.paste((200, 40 * i % 256, 10), (2, 2, 10 + i, 20))
        paths.append(str(tmp_path / f"person_{i}.png"))
        image.save(paths[-1])
        images.append(Image.open(paths[-1]).convert("RGB"))
    return paths, images


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_processor):
    """A tiny CADA model (the method with a second stage) saved with its processor, as the zoo saves it."""
    folder = tmp_path_factory.mktemp("model")
    model = ModelTester("cada").model().eval()
    model.save_pretrained(folder)
    tiny_processor.save_pretrained(folder)
    return folder, model


def expected_hits(model, processor, images, texts, k):
    index = GalleryIndex.build(model, processor, images, show_progress=False)
    results = index.search(texts, k=k)
    return [[{"index": i, "score": s} for i, s, _ in results.hits(q)] for q in range(len(texts))]


def test_saved_folder_names_the_pipeline_and_carries_its_code(saved):
    folder, _ = saved
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"] == {
        TASK: {"impl": "pipeline_tireid.TextToImageRetrievalPipeline", "pt": ["AutoModel"], "type": "multimodal"}}
    assert (folder / "pipeline_tireid.py").is_file()
    assert PIPELINE_REGISTRY.supported_tasks[TASK]["impl"] is TextToImageRetrievalPipeline  # importing tireid_hf registers it


@pytest.mark.parametrize("method", method_names())
def test_every_method_exported_for_inference_carries_the_pipeline(method, tmp_path):
    """What train.py, push, convert and export save goes through the config's save: each folder names
    the pipeline and holds its file."""
    ModelTester(method).model().export_for_inference().save_pretrained(tmp_path)
    assert TASK in json.loads((tmp_path / "config.json").read_text())["custom_pipelines"]
    assert (tmp_path / "pipeline_tireid.py").is_file()


def test_pipeline_without_tireid_hf_equals_gallery_index_search(saved, tiny_processor, tmp_path):
    folder, model = saved
    paths, images = gallery(tmp_path)
    (tmp_path / "images.json").write_text(json.dumps(paths))
    run_without_tireid_hf(REMOTE_PIPELINE, [folder, tmp_path / "images.json", tmp_path / "out.json"], tmp_path)
    out = json.loads((tmp_path / "out.json").read_text())

    assert out["batch"] == expected_hits(model, tiny_processor, images, TEXTS, 3)
    # one string: one ranked list; top_k above the gallery size ranks the whole gallery
    assert out["single"] == expected_hits(model, tiny_processor, images, TEXTS[:1], 7)[0]
    assert sorted(hit["index"] for hit in out["single"]) == list(range(7))


def test_pipeline_in_process_takes_pil_images_and_paths_alike(saved, tiny_processor, tmp_path):
    folder, model = saved
    paths, images = gallery(tmp_path, count=3)
    retrieve = TextToImageRetrievalPipeline(model=model, processor=tiny_processor)
    assert retrieve(TEXTS, images=images, top_k=2) == retrieve(TEXTS, images=paths, top_k=2) \
        == expected_hits(model, tiny_processor, images, TEXTS, 2)


@pytest.mark.parametrize("call, error, message", [
    (lambda r, images: r("", images=images), ValueError, r"`texts` must be a non-empty string or a non-empty list"),
    (lambda r, images: r([], images=images), ValueError, r"`texts` must be a non-empty string"),
    (lambda r, images: r(["a", 3], images=images), ValueError, r"`texts` must be.*got \['a', 3\]"),
    (lambda r, images: r("a man"), ValueError, r"`images` must be a non-empty list .*got NoneType"),
    (lambda r, images: r("a man", images=[]), ValueError, r"`images` must be a non-empty list"),
    (lambda r, images: r("a man", images=images, top_k=0), ValueError, r"`top_k` must be a positive integer, got 0"),
    (lambda r, images: r("a man", images=images, top_k=True), ValueError, r"`top_k` must be a positive integer"),
    (lambda r, images: r("a man", images=[images[0], "missing.png"]), ValueError,
     r"`images\[1\]`: no image file at 'missing.png'"),
    (lambda r, images: r("a man", images=[torch.zeros(3, 8, 8)]), TypeError,
     r"`images\[0\]` must be a PIL image or an image file path, got Tensor"),
])
def test_bad_input_is_named(saved, tiny_processor, tmp_path, call, error, message):
    _, model = saved
    retrieve = TextToImageRetrievalPipeline(model=model, processor=tiny_processor)
    with pytest.raises(error, match=message):
        call(retrieve, gallery(tmp_path, count=1)[1])
