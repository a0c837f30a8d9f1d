"""`tireid index build`: a split's gallery embedded once by a saved model, loadable by GalleryIndex."""

import pytest
import torch

from tester import ModelTester
from tireid_hf.cli import main as tireid
from tireid_hf.retrieval import GalleryIndex, embed_images

TEXTS = ["a woman in a red coat", "a man with a black backpack and blue jeans"]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, tiny_processor):
    folder = tmp_path_factory.mktemp("model")
    model = ModelTester("clip_reid").model().export_for_inference().eval()
    model.save_pretrained(folder)
    tiny_processor.save_pretrained(folder)
    return model, folder


def test_index_build_writes_the_gallery_of_the_split(saved_model, small_test_split, tiny_processor, small_synthetic_options,
                                                     tmp_path, capsys):
    model, folder = saved_model
    out = tmp_path / "index"
    assert tireid(["index", "build", "--model", str(folder), "--dataset", "synthetic", "--out", str(out),
                   "--precision", "int8", "--rescore", "8", *small_synthetic_options]) == 0
    assert f"wrote {out}: {len(small_test_split)} gallery images of synthetic test" in capsys.readouterr().out
    index = GalleryIndex.load(out, model=model, processor=tiny_processor, precision="int8")
    assert index.ids == list(small_test_split["image_path"]) and index.rescore == 8
    expected = embed_images(model, tiny_processor, small_test_split["image"], show_progress=False)
    torch.testing.assert_close(index.embeddings, expected, atol=1e-6, rtol=0)
    exact = GalleryIndex(expected)
    queries = model.get_text_features(**tiny_processor(text=TEXTS))
    assert torch.equal(index.search(TEXTS, k=4).indices, exact.search_embeddings(queries, k=4).indices)


def test_index_build_refuses_an_existing_folder_and_leaves_it_alone(saved_model, small_synthetic_options, tmp_path):
    _, folder = saved_model
    out = tmp_path / "index"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(SystemExit, match="already exists"):
        tireid(["index", "build", "--model", str(folder), "--dataset", "synthetic", "--out", str(out), *small_synthetic_options])
    assert [path.name for path in out.iterdir()] == ["mine.txt"]
