"""The pieces together with REAL models of the zoo: gallery search, re-ranking, `tireid evaluate`."""

import json

import pytest
import torch

from tireid_hf.cli import main as tireid
from tireid_hf.retrieval import GalleryIndex, evaluate_split
from tester import ModelTester

TEXTS = ["a woman in a red coat", "a man with a black backpack and blue jeans"]


def test_gallery_search_ranks_like_the_models_own_embeddings(small_test_split, tiny_processor, tmp_path):
    model = ModelTester("clip_reid").model().eval()
    images = list(small_test_split["image"])
    index = GalleryIndex.build(model, tiny_processor, images, ids=small_test_split["image_path"], show_progress=False)
    results = index.search(TEXTS, k=4)
    with torch.no_grad():
        scores = model.get_text_features(**tiny_processor(text=TEXTS)) @ model.get_image_features(**tiny_processor(images=images)).T
    expected = scores.topk(4, dim=1)
    assert torch.equal(results.indices, expected.indices)
    torch.testing.assert_close(results.scores, expected.values, atol=1e-5, rtol=0)
    assert results.ids[0][0] == small_test_split["image_path"][int(expected.indices[0, 0])]
    index.save(tmp_path / "index")
    assert torch.equal(GalleryIndex.load(tmp_path / "index", model=model, processor=tiny_processor).search(TEXTS, k=4).indices,
                       results.indices)
    with pytest.raises(ValueError):
        GalleryIndex.load(tmp_path / "index", model=ModelTester("clip_reid").model(seed=1), processor=tiny_processor)


def test_cada_rerank_adds_the_matching_score_to_the_first_stage(small_test_split, tiny_processor):
    model = ModelTester("cada").model().export_for_inference()
    images = list(small_test_split["image"])[:6]
    index = GalleryIndex.build(model, tiny_processor, images, show_progress=False)
    first = index.search(TEXTS[:1], k=6)
    reranked = index.search(TEXTS[:1], k=6, rerank=True, rerank_k=6)
    text = tiny_processor(text=TEXTS[:1])
    with torch.no_grad():
        matching = model.rerank_scores(text["input_ids"], text["attention_mask"],
                                       tiny_processor(images=[images[i] for i in first.indices[0]])["pixel_values"])
    combined = first.scores[0] + matching
    order = torch.sort(combined, descending=True, stable=True).indices
    assert torch.equal(reranked.indices[0], first.indices[0][order])
    torch.testing.assert_close(reranked.scores[0], combined[order], atol=1e-5, rtol=0)


def test_tireid_evaluate_writes_the_metrics_of_evaluate_split(small_test_split, tiny_processor, tmp_path, small_synthetic_options):
    model = ModelTester("clip_reid").model().export_for_inference()
    model.save_pretrained(tmp_path / "model")
    tiny_processor.save_pretrained(tmp_path / "model")
    assert tireid(["evaluate", "--model", str(tmp_path / "model"), "--dataset", "synthetic", "--split", "test",
                   "--output", str(tmp_path / "metrics.json"), *small_synthetic_options]) == 0
    written = json.loads((tmp_path / "metrics.json").read_text())
    expected = evaluate_split(model, tiny_processor, small_test_split, show_progress=False)
    assert written["metrics"]["t2i/num_queries"] == len(small_test_split) * 2
    for key, value in expected.items():
        assert written["metrics"][key] == pytest.approx(value, abs=1e-6)
