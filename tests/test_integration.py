"""The pieces together with REAL models of the zoo: gallery search, re-ranking, `tireid evaluate`."""

import json

import pytest
import torch

from tireid_hf.cli import main as tireid
from tireid_hf.data import load_tireid_dataset
from tireid_hf.processing import TIReIDProcessor
from tireid_hf.retrieval import GalleryIndex, evaluate_split
from tester import IMAGE_SIZE, ModelTester

DATA = {"num_train_ids": 4, "num_validation_ids": 3, "num_test_ids": 5, "images_per_id": 2, "seed": 1}
TEXTS = ["a woman in a red coat", "a man with a black backpack and blue jeans"]


@pytest.fixture(scope="module")
def test_split():
    return load_tireid_dataset("synthetic", **DATA)["test"]


@pytest.fixture(scope="module")
def processor():
    return TIReIDProcessor.for_image_size(IMAGE_SIZE)


def test_gallery_search_ranks_like_the_models_own_embeddings(test_split, processor, tmp_path):
    model = ModelTester("clip_reid").model().eval()
    images = list(test_split["image"])
    index = GalleryIndex.build(model, processor, images, ids=test_split["image_path"], show_progress=False)
    results = index.search(TEXTS, k=4)
    with torch.no_grad():
        scores = model.get_text_features(**processor(text=TEXTS)) @ model.get_image_features(**processor(images=images)).T
    expected = scores.topk(4, dim=1)
    assert torch.equal(results.indices, expected.indices)
    torch.testing.assert_close(results.scores, expected.values, atol=1e-5, rtol=0)
    assert results.ids[0][0] == test_split["image_path"][int(expected.indices[0, 0])]
    index.save(tmp_path / "index")
    assert torch.equal(GalleryIndex.load(tmp_path / "index", model=model, processor=processor).search(TEXTS, k=4).indices,
                       results.indices)
    with pytest.raises(ValueError):
        GalleryIndex.load(tmp_path / "index", model=ModelTester("clip_reid").model(seed=1), processor=processor)


def test_cada_rerank_adds_the_matching_score_to_the_first_stage(test_split, processor):
    model = ModelTester("cada").model().export_for_inference()
    images = list(test_split["image"])[:6]
    index = GalleryIndex.build(model, processor, images, show_progress=False)
    first = index.search(TEXTS[:1], k=6)
    reranked = index.search(TEXTS[:1], k=6, rerank=True, rerank_k=6)
    text = processor(text=TEXTS[:1])
    with torch.no_grad():
        matching = model.rerank_scores(text["input_ids"], text["attention_mask"],
                                       processor(images=[images[i] for i in first.indices[0]])["pixel_values"])
    combined = first.scores[0] + matching
    order = torch.sort(combined, descending=True, stable=True).indices
    assert torch.equal(reranked.indices[0], first.indices[0][order])
    torch.testing.assert_close(reranked.scores[0], combined[order], atol=1e-5, rtol=0)


def test_tireid_evaluate_writes_the_metrics_of_evaluate_split(test_split, processor, tmp_path):
    model = ModelTester("clip_reid").model().export_for_inference()
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    options = [argument for key, value in DATA.items() for argument in ("--option", f"{key}={value}")]
    assert tireid(["evaluate", "--model", str(tmp_path / "model"), "--dataset", "synthetic", "--split", "test",
                   "--output", str(tmp_path / "metrics.json"), *options]) == 0
    written = json.loads((tmp_path / "metrics.json").read_text())
    expected = evaluate_split(model, processor, test_split, show_progress=False)
    assert written["metrics"]["t2i/num_queries"] == len(test_split) * 2
    for key, value in expected.items():
        assert written["metrics"][key] == pytest.approx(value, abs=1e-6)
