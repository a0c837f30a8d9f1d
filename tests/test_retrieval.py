"""GalleryIndex and evaluate_split with tiny test doubles of the model and processor."""

import sys
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from tireid_hf.metrics import rank_metrics
from tireid_hf.retrieval import GalleryIndex, evaluate_split, model_fingerprint

try:
    import faiss  # noqa: F401

    HAVE_FAISS = True
except ImportError:
    HAVE_FAISS = False
needs_faiss = pytest.mark.skipif(not HAVE_FAISS, reason="faiss is not importable (optional extra: pip install tireid-hf[faiss])")


class TinyModel(torch.nn.Module):
    """Embeds an image as a fixed random projection of its mean colour, a text as a bag of tokens."""

    def __init__(self, seed=0, dim=8):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.image_projection = torch.nn.Parameter(torch.randn(3, dim, generator=generator))
        self.token_embedding = torch.nn.Parameter(torch.randn(64, dim, generator=generator))
        self.config = SimpleNamespace(model_type="tireid-tiny", to_dict=lambda: {"model_type": "tireid-tiny"})
        self.name_or_path = f"tiny-{seed}"

    def get_image_features(self, pixel_values):
        return torch.nn.functional.normalize(pixel_values.mean((2, 3)) @ self.image_projection, dim=-1)

    def get_text_features(self, input_ids, attention_mask):
        tokens = self.token_embedding[input_ids] * attention_mask[..., None]
        return torch.nn.functional.normalize(tokens.sum(1), dim=-1)


class TinyRerankModel(TinyModel):
    """Second stage: a large bonus for red images, so re-ranking visibly changes the order."""

    def rerank_scores(self, input_ids, attention_mask, pixel_values):
        assert input_ids.shape[0] == 1 and attention_mask.shape == input_ids.shape
        return 10.0 * pixel_values[:, 0].mean((1, 2))


class TinyProcessor:
    def __call__(self, text=None, images=None, return_tensors="pt", padding=False, truncation=False):
        if text is not None:
            ids = [[ord(c) % 64 for c in sentence][:16] for sentence in text]
            length = max(len(row) for row in ids)
            return {
                "input_ids": torch.tensor([row + [0] * (length - len(row)) for row in ids]),
                "attention_mask": torch.tensor([[1] * len(row) + [0] * (length - len(row)) for row in ids]),
            }
        arrays = [np.asarray(image.convert("RGB").resize((4, 8)), dtype=np.float32) / 255 for image in images]
        return {"pixel_values": torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)}


def make_images(count, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (16, 8, 3), dtype=np.uint8)) for _ in range(count)]


TEXTS = ["a man in a blue jacket", "a woman with a red bag", "black trousers and white shoes", "green shirt"]


@pytest.fixture
def gallery():
    model, processor, images = TinyModel(), TinyProcessor(), make_images(11)
    index = GalleryIndex.build(model, processor, images, ids=[f"img{i}.jpg" for i in range(11)], batch_size=4, show_progress=False)
    return model, processor, images, index


def test_build_embeds_every_image(gallery):
    model, processor, images, index = gallery
    expected = model.get_image_features(**processor(images=images))
    assert len(index) == 11 and torch.allclose(index.embeddings, expected, atol=1e-6)
    assert index.fingerprint == model_fingerprint(model) and index.fingerprint.startswith("tireid-tiny:")


def test_search_agrees_with_the_core_ranking(gallery):
    model, processor, images, index = gallery
    similarity = model.get_text_features(**processor(text=TEXTS, padding=True)) @ index.embeddings.T
    results = index.search(TEXTS, k=5)
    assert results.indices.shape == (4, 5) and results.scores.shape == (4, 5)
    expected_order = torch.sort(similarity, dim=1, descending=True, stable=True).indices
    assert torch.equal(results.indices, expected_order[:, :5])
    assert torch.allclose(results.scores, similarity.gather(1, expected_order[:, :5]), atol=1e-6)
    assert results.ids[0] == [f"img{i}.jpg" for i in expected_order[0, :5].tolist()]
    # The rank of the top-1 item under rank_metrics: a pid only the top-1 has is found at rank 1.
    for row in range(4):
        gallery_pids = torch.zeros(11, dtype=torch.long)
        gallery_pids[results.indices[row, 0]] = 1
        assert rank_metrics(similarity[row : row + 1], [1], gallery_pids, ks=(1,))["R1"] == 100.0
    assert index.search(TEXTS[:1], k=50).indices.shape == (1, 11)  # k is capped at the gallery size


def test_save_load_round_trip(gallery, tmp_path):
    model, processor, images, index = gallery
    index.save(tmp_path / "index")
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == ["embeddings.safetensors", "index.json"]
    loaded = GalleryIndex.load(tmp_path / "index", model=model, processor=processor)
    assert torch.equal(loaded.embeddings, index.embeddings) and loaded.ids == index.ids
    before, after = index.search(TEXTS, k=3), loaded.search(TEXTS, k=3)
    assert torch.equal(before.indices, after.indices) and torch.equal(before.scores, after.scores)
    assert before.ids == after.ids


def test_load_refuses_another_model(gallery, tmp_path):
    _, processor, _, index = gallery
    index.save(tmp_path)
    with pytest.raises(ValueError, match="built by another model"):
        GalleryIndex.load(tmp_path, model=TinyModel(seed=1), processor=processor)


def test_load_without_model_searches_embeddings_only(gallery, tmp_path):
    model, processor, _, index = gallery
    index.save(tmp_path)
    loaded = GalleryIndex.load(tmp_path)
    with pytest.raises(ValueError, match="no model to embed the queries"):
        loaded.search(TEXTS)
    queries = model.get_text_features(**processor(text=TEXTS, padding=True))
    assert torch.equal(loaded.search_embeddings(queries, k=4).indices, index.search(TEXTS, k=4).indices)
    with pytest.raises(ValueError, match=r"query_embeds.*\[num_queries, 8\].*got \[4, 3\]"):
        loaded.search_embeddings(queries[:, :3])


def test_bad_index_input(tmp_path):
    with pytest.raises(ValueError, match="one id per embedding: expected 3, got 2"):
        GalleryIndex(torch.randn(3, 4), ids=["a", "b"])
    with pytest.raises(ValueError, match="backend"):
        GalleryIndex(torch.randn(3, 4), backend="annoy")
    with pytest.raises(ValueError, match=r"embeddings.*got \[0, 4\]"):
        GalleryIndex(torch.randn(0, 4))
    with pytest.raises(FileNotFoundError, match="index.json is missing"):
        GalleryIndex.load(tmp_path)
    with pytest.raises(TypeError, match="JSON-serialisable"):
        GalleryIndex(torch.randn(2, 4), ids=[object(), object()]).save(tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_rerank_resorts_the_top_k():
    model, processor, images = TinyRerankModel(), TinyProcessor(), make_images(9, seed=3)
    index = GalleryIndex.build(model, processor, images, show_progress=False)
    first = index.search(TEXTS, k=6)
    reranked = index.search(TEXTS, k=3, rerank=True, rerank_k=6)
    pixel_values = processor(images=images)["pixel_values"]
    bonus = 10.0 * pixel_values[:, 0].mean((1, 2))
    for row in range(len(TEXTS)):
        candidates = first.indices[row]
        combined = first.scores[row] + bonus[candidates]
        order = torch.sort(combined, descending=True, stable=True).indices[:3]
        assert torch.equal(reranked.indices[row], candidates[order])
        assert torch.allclose(reranked.scores[row], combined[order], atol=1e-5)
    with pytest.raises(ValueError, match=r"rerank_k.*\(2\) must be at least `k` \(3\)"):
        index.search(TEXTS, k=3, rerank=True, rerank_k=2)


def test_rerank_needs_a_second_stage_and_images(gallery, tmp_path):
    model, processor, images, index = gallery
    with pytest.raises(ValueError, match="rerank_scores"):
        index.search(TEXTS, rerank=True)
    rerank_model = TinyRerankModel()
    GalleryIndex.build(rerank_model, processor, images, show_progress=False).save(tmp_path)
    with pytest.raises(ValueError, match="needs the gallery images"):
        GalleryIndex.load(tmp_path, model=rerank_model, processor=processor).search(TEXTS, rerank=True)


@needs_faiss
def test_faiss_flat_matches_exact_and_round_trips(gallery, tmp_path):
    model, processor, images, exact = gallery
    index = GalleryIndex(exact.embeddings, exact.ids, backend="faiss", faiss_factory="Flat", faiss_params="")
    queries = model.get_text_features(**processor(text=TEXTS, padding=True))
    expected, got = exact.search_embeddings(queries, k=5), index.search_embeddings(queries, k=5)
    assert torch.equal(got.indices, expected.indices) and torch.allclose(got.scores, expected.scores, atol=1e-5)
    index.save(tmp_path)
    loaded = GalleryIndex.load(tmp_path)
    assert loaded.backend == "faiss" and torch.equal(loaded.search_embeddings(queries, k=5).indices, expected.indices)


@needs_faiss
def test_faiss_default_finds_the_exact_top_1():
    embeddings = torch.nn.functional.normalize(torch.randn(500, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    exact, approximate = GalleryIndex(embeddings), GalleryIndex(embeddings, backend="faiss")
    queries = embeddings[:20] + 0.01
    assert torch.equal(approximate.search_embeddings(queries, k=1).indices, exact.search_embeddings(queries, k=1).indices)
    approximate.set_faiss_params("nprobe=4")
    assert approximate.faiss_params == "nprobe=4"
    hnsw = GalleryIndex(embeddings, backend="faiss", faiss_factory="HNSW32,Flat", faiss_params="efSearch=128")
    assert torch.equal(hnsw.search_embeddings(queries, k=1).indices, exact.search_embeddings(queries, k=1).indices)
    hnsw.set_faiss_params("efSearch=256")
    assert hnsw.faiss_params == "efSearch=256"
    with pytest.raises(ValueError, match="needs backend='faiss'"):
        exact.set_faiss_params("efSearch=256")


# ---- evaluate_split and `tireid evaluate` ----

def make_split():
    images = make_images(6, seed=5)
    return datasets.Dataset.from_dict({
        "image": images,
        "image_path": [f"{i}.jpg" for i in range(6)],
        "pid": [0, 0, 1, 1, 2, 3],
        "captions": [["a man in blue", "blue jacket man"], ["man in a blue coat"], ["red dress"], ["a red dress", "woman"], ["green"], ["black bag", "a black bag"]],
    }).cast_column("image", datasets.Image())


def split_similarity(model, processor, split):
    texts = [caption for row in split["captions"] for caption in row]
    text_pids = [pid for pid, row in zip(split["pid"], split["captions"]) for _ in row]
    images = list(split["image"])
    similarity = model.get_text_features(**processor(text=texts, padding=True)) @ model.get_image_features(**processor(images=images)).T
    return similarity, texts, text_pids, images


def test_evaluate_split_matches_the_core():
    model, processor, split = TinyModel(), TinyProcessor(), make_split()
    model.train()
    results = evaluate_split(model, processor, split, batch_size=4, directions=("t2i", "i2t"), show_progress=False)
    assert model.training  # mode restored
    similarity, _, text_pids, _ = split_similarity(model, processor, split)
    for direction in ("t2i", "i2t"):
        expected = rank_metrics(similarity, text_pids, split["pid"], direction=direction)
        for key, value in expected.items():
            assert results[f"{direction}/{key}"] == pytest.approx(value, abs=1e-6)
    assert results["t2i/num_queries"] == 9 and results["i2t/num_queries"] == 6


def test_evaluate_split_rerank_over_the_whole_gallery_ranks_by_the_combined_score():
    model, processor, split = TinyRerankModel(), TinyProcessor(), make_split()
    results = evaluate_split(model, processor, split, rerank=True, rerank_k=6, show_progress=False)
    similarity, _, text_pids, images = split_similarity(model, processor, split)
    combined = similarity + 10.0 * processor(images=images)["pixel_values"][:, 0].mean((1, 2))[None, :]
    expected = rank_metrics(combined, text_pids, split["pid"])
    assert {key: pytest.approx(value, abs=1e-6) for key, value in expected.items()} == {k[4:]: v for k, v in results.items()}
    plain = evaluate_split(model, processor, split, show_progress=False)
    assert plain != results  # the second stage changed the ranking


def test_evaluate_split_bad_input():
    model, processor, split = TinyModel(), TinyProcessor(), make_split()
    with pytest.raises(ValueError, match="missing \\['captions'\\]"):
        evaluate_split(model, processor, split.remove_columns("captions"))
    with pytest.raises(ValueError, match="directions"):
        evaluate_split(model, processor, split, directions=("x2y",))
    with pytest.raises(ValueError, match="text-to-image results only"):
        evaluate_split(TinyRerankModel(), processor, split, rerank=True, directions=("t2i", "i2t"))
    with pytest.raises(ValueError, match="rerank_scores"):
        evaluate_split(model, processor, split, rerank=True)


def test_faiss_backend_without_faiss_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    with pytest.raises(ImportError, match=r"tireid-hf\[faiss\]"):
        GalleryIndex(torch.randn(3, 4), backend="faiss")


class ColourMatcher(torch.nn.Module):
    """Three solid-colour images (red, green, blue; one identity each), captions naming a colour.
    First stage: image = its RGB, text = a fixed vector; second stage: a fixed probability table."""

    TEXT = {0: [1.0, 0.6, 0.2], 1: [0.2, 1.0, 0.6], 2: [0.6, 0.2, 1.0]}  # hardest negatives: red->green, green->blue, blue->red
    MATCH = {0: [0.9, 0.55, 0.0], 1: [0.0, 0.3, 0.2], 2: [0.7, 0.0, 0.6]}  # P(match | caption, image colour)

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def get_image_features(self, pixel_values):
        return torch.nn.functional.normalize(pixel_values.mean((2, 3)), dim=-1)

    def get_text_features(self, input_ids, attention_mask):
        return torch.nn.functional.normalize(torch.tensor([self.TEXT[int(i)] for i in input_ids[:, 0]]), dim=-1)

    def rerank_scores(self, input_ids, attention_mask, pixel_values):
        colours = pixel_values.mean((2, 3)).argmax(dim=1)
        return torch.tensor([self.MATCH[int(input_ids[0, 0])][int(c)] for c in colours])


class ColourProcessor:
    WORDS = {"red": 0, "green": 1, "blue": 2}

    def __call__(self, text=None, images=None, return_tensors="pt", padding=False, truncation=False):
        if text is not None:
            ids = torch.tensor([[self.WORDS[word]] for word in text])
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        arrays = [np.asarray(image, dtype=np.float32) / 255 for image in images]
        return {"pixel_values": torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)}


def test_matching_accuracy_scores_own_image_against_the_hardest_other_identity():
    from tireid_hf.retrieval import matching_accuracy

    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    split = {"image": [Image.new("RGB", (4, 8), colour) for colour in colours], "pid": [0, 1, 2],
             "captions": [["red"], ["green"], ["blue"]]}
    model = ColourMatcher().train()
    metrics = matching_accuracy(model, ColourProcessor(), split)
    # positives 0.9 / 0.3 / 0.6 -> 2 of 3 above 0.5; hardest negatives (green .55, blue .2, red .7) -> 1 of 3 below
    assert metrics["itm/positive_accuracy"] == pytest.approx(2 / 3)
    assert metrics["itm/negative_accuracy"] == pytest.approx(1 / 3)
    assert metrics["itm/accuracy"] == pytest.approx(0.5)
    assert metrics["itm/pairwise_accuracy"] == pytest.approx(2 / 3)  # .9 > .55, .3 > .2, .6 < .7
    assert metrics["itm/num_queries"] == 3 and model.training
    assert matching_accuracy(model, ColourProcessor(), split, max_queries=1)["itm/num_queries"] == 1
    with pytest.raises(ValueError, match="second stage"):
        matching_accuracy(TinyModel(), ColourProcessor(), split)


def test_rerank_refusal_needs_balanced_accuracy_two_standard_errors_above_chance():
    from tireid_hf.retrieval import rerank_refusal

    threshold = 0.5 + 2 * 0.5 / (2 * 200) ** 0.5  # 0.55 for 200 queries
    assert rerank_refusal({"itm/accuracy": threshold + 1e-3, "itm/num_queries": 200.0}) is None
    refused = rerank_refusal({"itm/accuracy": threshold - 1e-3, "itm/num_queries": 200.0})
    assert "0.549" in refused and "0.550" in refused and "noise" in refused
    assert rerank_refusal({"t2i/R1": 50.0}) is None  # no matching head measured: nothing to refuse


def test_rerank_gain_refusal_needs_re_ranking_to_raise_validation_r1():
    from tireid_hf.retrieval import rerank_gain_refusal

    assert rerank_gain_refusal({"t2i/R1": 20.55}, {"t2i/R1": 20.60}, 16) is None
    assert rerank_gain_refusal({"t2i/R1": 20.55}, {"t2i/R1": 20.55}, 16) == (
        "re-ranking each query's top 16 does not raise validation R@1 (20.55 -> 20.55)")  # no gain: not worth it
    assert rerank_gain_refusal({"t2i/R1": 20.6}, {"t2i/R1": 16.1}, 32) == (
        "re-ranking each query's top 32 does not raise validation R@1 (20.60 -> 16.10)")
