"""GalleryIndex's search backends: compressed exact search (float16, int8 with per-vector scales),
exact re-scoring of candidates, FAISS defaults, and what save/load do with each, bad files included."""

import json

import pytest
import torch

from tireid_hf.retrieval import GalleryIndex
from tireid_hf.retrieval.backends import ExactBackend

try:
    import faiss  # noqa: F401

    HAVE_FAISS = True
except ImportError:
    HAVE_FAISS = False
needs_faiss = pytest.mark.skipif(not HAVE_FAISS, reason="faiss is not importable (optional extra: pip install tireid-hf[faiss])")


def clustered(num_items=3000, dim=64, num_queries=40, seed=0):
    """Unit gallery vectors around 60 centres sharing a mean direction, and queries near some items."""
    generator = torch.Generator().manual_seed(seed)
    unit = lambda x: torch.nn.functional.normalize(x, dim=-1)  # noqa: E731
    mean = unit(torch.randn(dim, generator=generator))
    centres = unit(torch.randn(60, dim, generator=generator))
    owner = torch.randint(60, (num_items,), generator=generator)
    gallery = unit(0.7 * mean + 0.5 * centres[owner] + 0.5 * unit(torch.randn(num_items, dim, generator=generator)))
    queries = unit(gallery[:num_queries] + 0.6 * unit(torch.randn(num_queries, dim, generator=generator)))
    return gallery, queries


def overlap(a, b) -> float:
    """Mean share of each row of `a` found in the same row of `b` (recall@k of `a` against `b`)."""
    return sum(len(set(x) & set(y)) / len(x) for x, y in zip(a.tolist(), b.tolist())) / len(a)


def test_int8_codes_are_per_vector_symmetric_scales():
    embeddings = torch.tensor([[0.6, -0.8], [0.0, 0.5], [-0.25, 0.125]])
    stored = ExactBackend(embeddings, "int8").compressed()
    # scale = max|e| / 127; code = round(e / scale)
    assert torch.allclose(stored["scales"], torch.tensor([0.8, 0.5, 0.25]) / 127)
    assert stored["codes"].tolist() == [[95, -127], [0, 127], [-127, 64]]  # 0.6*127/0.8 = 95.25; 0.125*127/0.25 = 63.5
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    scores, indices = ExactBackend(embeddings, "int8").search(queries, k=3)
    expected = queries @ (stored["codes"].float() * stored["scales"][:, None]).T
    assert torch.allclose(scores, expected.sort(dim=1, descending=True).values, atol=0.02)
    assert indices[0].tolist() == [0, 1, 2] and indices[1].tolist() == [1, 2, 0]


@pytest.mark.parametrize("precision", ["float16", "int8"])
def test_compressed_scores_are_close_and_rescoring_makes_them_exact(precision):
    gallery, queries = clustered()
    exact = GalleryIndex(gallery).search_embeddings(queries, k=10)
    compressed = GalleryIndex(gallery, precision=precision).search_embeddings(queries, k=10)
    tolerance = {"float16": 2e-3, "int8": 3e-2}[precision]
    assert (compressed.scores - exact.scores).abs().max() < tolerance
    assert overlap(compressed.indices, exact.indices) >= 0.9
    rescored = GalleryIndex(gallery, precision=precision, rescore=50).search_embeddings(queries, k=10)
    assert torch.equal(rescored.indices, exact.indices)
    assert torch.allclose(rescored.scores, exact.scores, atol=1e-6)


@pytest.mark.parametrize("precision", ["float32", "float16", "int8"])
def test_precision_and_rescore_round_trip(precision, tmp_path):
    gallery, queries = clustered(num_items=500)
    index = GalleryIndex(gallery, [f"img{i}" for i in range(500)], precision=precision, rescore=20)
    index.save(tmp_path)
    files = sorted(path.name for path in tmp_path.iterdir())
    assert files == sorted(["embeddings.safetensors", "index.json"] + ([] if precision == "float32" else [f"exact_{precision}.safetensors"]))
    loaded = GalleryIndex.load(tmp_path)
    assert loaded.precision == precision and loaded.rescore == 20 and loaded.ids == index.ids
    for key, tensor in index.search_backend.compressed().items():
        assert torch.equal(loaded.search_backend.compressed()[key], tensor)
    before, after = index.search_embeddings(queries, k=7), loaded.search_embeddings(queries, k=7)
    assert torch.equal(before.indices, after.indices) and torch.equal(before.scores, after.scores)
    assert GalleryIndex.load(tmp_path, precision=precision).precision == precision


def test_load_refuses_another_precision_and_names_the_file(tmp_path):
    gallery, _ = clustered(num_items=200)
    GalleryIndex(gallery, precision="float16").save(tmp_path)
    with pytest.raises(ValueError, match=r"index\.json: the index was built with precision 'float16', not 'int8'"):
        GalleryIndex.load(tmp_path, precision="int8")


def test_bad_options():
    gallery, _ = clustered(num_items=50)
    with pytest.raises(ValueError, match="`precision` must be one of"):
        GalleryIndex(gallery, precision="int4")
    with pytest.raises(ValueError, match="`rescore` must be a whole number >= 0"):
        GalleryIndex(gallery, rescore=-1)
    with pytest.raises(ValueError, match="exact backend; FAISS compresses through its factory"):
        GalleryIndex(gallery, backend="faiss", precision="int8")


@pytest.mark.parametrize("file, damage, message", [
    ("index.json", lambda path: path.write_text("{not json"), r"index\.json: not valid JSON"),
    ("index.json", lambda path: path.write_text(json.dumps({"format_version": 2})), r"index\.json: missing field"),
    ("embeddings.safetensors", lambda path: path.write_bytes(path.read_bytes()[:-40]), r"embeddings\.safetensors: .*truncated"),
    ("embeddings.safetensors", lambda path: path.write_bytes(b"garbage"), r"embeddings\.safetensors: not a readable"),
    ("exact_int8.safetensors", lambda path: path.write_bytes(b"\x08" + b"\x00" * 7 + b"nonsense"), r"exact_int8\.safetensors: the int8 copy"),
    ("exact_int8.safetensors", lambda path: path.unlink(), r"exact_int8\.safetensors: the int8 copy"),
])
def test_corrupt_index_files_get_an_error_naming_the_file(tmp_path, file, damage, message):
    gallery, _ = clustered(num_items=100)
    GalleryIndex(gallery, precision="int8").save(tmp_path)
    damage(tmp_path / file)
    with pytest.raises(ValueError, match=message):
        GalleryIndex.load(tmp_path)


def test_int8_copy_of_the_wrong_shape_is_refused(tmp_path):
    from safetensors.torch import save_file

    gallery, _ = clustered(num_items=100)
    GalleryIndex(gallery, precision="int8").save(tmp_path)
    save_file({"codes": torch.zeros(99, 64, dtype=torch.int8), "scales": torch.ones(99)}, tmp_path / "exact_int8.safetensors")
    with pytest.raises(ValueError, match=r"exact_int8\.safetensors: expected `codes` of torch\.int8 \[100, 64\], got torch\.int8 \[99, 64\]"):
        GalleryIndex.load(tmp_path)


def test_saving_again_replaces_the_backend_files(tmp_path):
    gallery, _ = clustered(num_items=300)
    GalleryIndex(gallery, precision="int8").save(tmp_path)
    GalleryIndex(gallery[:200], precision="float16").save(tmp_path)
    loaded = GalleryIndex.load(tmp_path)
    assert len(loaded) == 200 and loaded.precision == "float16"


def test_version_1_index_still_loads(tmp_path):
    gallery, queries = clustered(num_items=100)
    index = GalleryIndex(gallery, fingerprint="tiny:abc")
    index.save(tmp_path)
    metadata = json.loads((tmp_path / "index.json").read_text())
    for key in ("backend_settings", "rescore"):
        del metadata[key]
    metadata.update(format_version=1, faiss_factory="HNSW32,Flat", faiss_params="efSearch=128")
    (tmp_path / "index.json").write_text(json.dumps(metadata))
    loaded = GalleryIndex.load(tmp_path)
    assert loaded.precision == "float32" and loaded.fingerprint == "tiny:abc"
    assert torch.equal(loaded.search_embeddings(queries, k=5).indices, index.search_embeddings(queries, k=5).indices)


@needs_faiss
def test_faiss_default_reaches_the_exact_top_10_on_clustered_embeddings(tmp_path):
    gallery, queries = clustered(num_items=4000)
    exact = GalleryIndex(gallery).search_embeddings(queries, k=10)
    approximate = GalleryIndex(gallery, backend="faiss")
    assert overlap(approximate.search_embeddings(queries, k=10).indices, exact.indices) >= 0.95
    approximate.save(tmp_path)
    loaded = GalleryIndex.load(tmp_path)
    assert loaded.faiss_params == approximate.faiss_params and loaded.rescore == approximate.rescore
    assert torch.equal(loaded.search_embeddings(queries, k=10).indices, approximate.search_embeddings(queries, k=10).indices)


@needs_faiss
def test_corrupt_faiss_file_gets_an_error_naming_it(tmp_path):
    gallery, _ = clustered(num_items=100)
    GalleryIndex(gallery, backend="faiss", faiss_factory="Flat", faiss_params="").save(tmp_path)
    (tmp_path / "faiss.index").write_bytes(b"not a faiss index")
    with pytest.raises(ValueError, match=r"faiss\.index: not a readable FAISS index"):
        GalleryIndex.load(tmp_path)


def test_default_faiss_settings_scale_with_the_gallery():
    from tireid_hf.retrieval.index import default_faiss_settings

    # nlist = round(4 sqrt(G)) capped at G // 39; nprobe = ceil(nlist / 16)
    assert default_faiss_settings(100_000) == ("IVF1265,Flat", "nprobe=80")
    assert default_faiss_settings(500) == ("IVF12,Flat", "nprobe=1")
    assert default_faiss_settings(10) == ("IVF1,Flat", "nprobe=1")
