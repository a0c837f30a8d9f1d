"""Same-person decisions: GalleryIndex's ``min_score`` on every backend, the model's threshold, and the
threshold training picks on validation (results.json, config.json, model card)."""

import math

import pytest
import torch

from test_retrieval import TEXTS, TinyProcessor, TinyRerankModel, make_images
from test_retrieval_backends import clustered
from tireid_hf.retrieval import GalleryIndex

try:
    import faiss  # noqa: F401

    HAVE_FAISS = True
except ImportError:
    HAVE_FAISS = False
needs_faiss = pytest.mark.skipif(not HAVE_FAISS, reason="faiss is not importable (optional extra: pip install tireid-hf[faiss])")

BACKENDS = [
    pytest.param(dict(), id="exact-float32"),
    pytest.param(dict(precision="float16"), id="exact-float16"),
    pytest.param(dict(precision="int8"), id="exact-int8"),
    pytest.param(dict(precision="int8", rescore=40), id="exact-int8-rescored"),
    pytest.param(dict(backend="faiss", faiss_factory="Flat"), id="faiss-flat", marks=needs_faiss),
    pytest.param(dict(backend="faiss", faiss_factory="IVF8,Flat", faiss_params="nprobe=8"), id="faiss-ivf", marks=needs_faiss),
]


@pytest.mark.parametrize("options", BACKENDS)
def test_min_score_keeps_the_leading_results_scoring_at_least_it_on_every_backend(options):
    gallery, queries = clustered(num_items=400, dim=32, num_queries=6)
    index = GalleryIndex(gallery, ids=[f"p{i}" for i in range(400)], **options)
    everything = index.search_embeddings(queries, k=20)
    cut = float(everything.scores[:, 9].median())  # some queries keep more than 10 of their 20, some fewer
    kept = index.search_embeddings(queries, k=20, min_score=cut)
    assert kept.indices.shape == kept.scores.shape == (6, 20)
    counts = []
    for row in range(6):
        count = int((everything.scores[row] >= cut).sum())  # the backend's own scores, best first
        counts.append(count)
        assert torch.equal(kept.indices[row, :count], everything.indices[row, :count])
        assert torch.equal(kept.scores[row, :count], everything.scores[row, :count])
        assert (kept.indices[row, count:] == -1).all() and torch.isneginf(kept.scores[row, count:]).all()
        assert kept.ids[row] == [f"p{i}" for i in everything.indices[row, :count].tolist()]
        assert kept.hits(row) == list(zip(everything.indices[row, :count].tolist(),
                                          everything.scores[row, :count].tolist(), kept.ids[row]))
    assert min(counts) < 10 < max(counts)
    if options.get("precision", "float32") == "float32" or options.get("rescore"):
        # exact scores: the kept items are the top-20 whose inner product with the query is >= cut
        exact = queries @ gallery.T
        for row in range(6):
            top = set(exact[row].topk(20).indices.tolist())
            assert set(kept.indices[row, :counts[row]].tolist()) == {i for i in top if exact[row, i] >= cut - 1e-6}
    nothing = index.search_embeddings(queries, k=5, min_score=1.5)  # above any cosine
    assert nothing.ids == [[]] * 6 and (nothing.indices == -1).all() and nothing.hits(0) == []


def test_min_score_model_is_the_threshold_in_the_models_config():
    model, processor, images = TinyRerankModel(), TinyProcessor(), make_images(11)
    index = GalleryIndex.build(model, processor, images, show_progress=False)
    with pytest.raises(ValueError, match=r"min_score='model': the model tiny-0 carries no score threshold"):
        index.search(TEXTS, k=5, min_score="model")
    scores = index.search(TEXTS, k=11).scores
    model.config.score_threshold = float(scores[:, 4].median())
    by_model = index.search(TEXTS, k=11, min_score="model")
    by_number = index.search(TEXTS, k=11, min_score=model.config.score_threshold)
    assert by_model.ids == by_number.ids and 0 < sum(map(len, by_model.ids)) < 11 * len(TEXTS)
    assert index.score_threshold("model") == model.config.score_threshold and index.score_threshold(None) is None
    for bad in ("high", True, math.nan, math.inf):
        with pytest.raises(ValueError, match="`min_score` must be None, a finite number or 'model'"):
            index.search(TEXTS, min_score=bad)
    with pytest.raises(ValueError, match="min_score='model' needs the index's model"):
        GalleryIndex(index.embeddings).search_embeddings(torch.zeros(1, index.embeddings.shape[1]), min_score="model")


def test_min_score_with_rerank_re_ranks_only_the_first_stage_items_above_it():
    model, processor, images = TinyRerankModel(), TinyProcessor(), make_images(9, seed=3)
    index = GalleryIndex.build(model, processor, images, show_progress=False)
    first = index.search(TEXTS, k=6)
    cut = float(first.scores[:, 2].median())
    reranked = index.search(TEXTS, k=4, rerank=True, rerank_k=6, min_score=cut)
    pixel_values = processor(images=images)["pixel_values"]
    bonus = 10.0 * pixel_values[:, 0].mean((1, 2))
    for row in range(len(TEXTS)):
        count = int((first.scores[row] >= cut).sum())
        candidates = first.indices[row, :count]
        combined = first.scores[row, :count] + bonus[candidates]
        order = torch.sort(combined, descending=True, stable=True).indices[:4]
        shown = min(4, count)
        assert reranked.indices[row, :shown].tolist() == candidates[order].tolist()
        assert torch.allclose(reranked.scores[row, :shown], combined[order], atol=1e-5)
        assert (reranked.indices[row, shown:] == -1).all() and len(reranked.ids[row]) == shown
    assert {min(4, int((row >= cut).sum())) for row in first.scores} != {4}  # some query keeps fewer than k


def test_training_picks_the_threshold_on_validation_and_writes_it_to_results_config_and_card(tmp_path):
    from transformers import AutoConfig, AutoModel

    from test_training_run import DATA, run
    from tireid_hf.data import load_tireid_dataset
    from tireid_hf.hub.model_card import render_model_card
    from tireid_hf.metrics import score_threshold_at_fpr
    from tireid_hf.processing import TIReIDProcessor
    from tireid_hf.retrieval import embed_images, embed_texts, split_queries

    results = run(tmp_path, "--max_steps", "6", "--threshold_fpr", "0.05")
    out = tmp_path / "out"
    assert results["threshold_fpr"] == 0.05 and results["threshold_split"] == "validation"
    threshold = results["score_threshold"]
    assert results["best_validation"]["metrics"]["t2i/score_threshold"] == threshold
    config = AutoConfig.from_pretrained(out)
    assert config.score_threshold == threshold and config.score_threshold_fpr == 0.05
    # the threshold of the saved model's own scores on the validation split (every caption x every image)
    model, processor = AutoModel.from_pretrained(out).eval(), TIReIDProcessor.from_pretrained(out)
    validation = load_tireid_dataset("synthetic", **DATA)["validation"]
    texts, text_pids = split_queries(validation)
    similarity = (embed_texts(model, processor, texts, show_progress=False)
                  @ embed_images(model, processor, validation["image"], show_progress=False).T)
    assert threshold == pytest.approx(score_threshold_at_fpr(similarity, text_pids, validation["pid"], 0.05), abs=1e-6)
    negatives = similarity[torch.tensor(text_pids)[:, None] != torch.tensor(validation["pid"])[None, :]]
    assert 0 < (negatives >= threshold - 1e-6).float().mean() <= 0.05  # some false positives, no more than 5%
    card = render_model_card(results, config, repo_id="org/x").text
    assert f"scoring at least **{threshold:.4f}**" in card and "(false-positive rate 0.05), picked on the validation" in card
    # the trained model's threshold is what min_score="model" cuts at
    index = GalleryIndex.build(model, processor, validation["image"], show_progress=False)
    found = index.search(texts[:4], k=len(validation), min_score="model")
    assert all(score >= threshold for row in range(4) for _, score, _ in found.hits(row))
    assert sum(map(len, found.ids)) == int((similarity[:4] >= threshold).sum())


def test_threshold_fpr_must_be_a_rate():
    from tireid_hf.training.arguments import TrainingArguments

    for bad in (0, 1, 1.5, -0.1, True):
        with pytest.raises(ValueError, match=rf"threshold_fpr must be a false-positive rate in \(0, 1\), got {bad!r}"):
            TrainingArguments(threshold_fpr=bad)


def test_card_states_the_threshold_only_where_results_json_has_one():
    from test_hub import fake_results
    from tester import ModelTester
    from tireid_hf.hub.model_card import render_model_card

    config = ModelTester("clip_reid").config()
    without = render_model_card(fake_results("clip_reid"), config, repo_id="org/x").text
    assert "Same person or not" not in without
    results = {**fake_results("clip_reid"), "score_threshold": 0.41236, "threshold_fpr": 0.001, "threshold_split": "validation"}
    card = render_model_card(results, config, repo_id="org/x").text
    assert ("A caption and an image scoring at least **0.4124** (cosine of\nthe embeddings) are taken as the same person: "
            "the threshold at which at most a fraction 0.001 of the\ndifferent-person caption-image pairs pass "
            "(false-positive rate 0.001), picked on the validation\nsplit.") in card
