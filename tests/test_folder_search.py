"""`tireid search` and its library, tireid_hf.retrieval.folder_search: a plain photo folder searched by
text, its index kept beside it and updated file by file."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from test_index_command import saved_model  # noqa: F401  (fixture: a tiny clip_reid model saved with its processor)
from tester import ModelTester
from tireid_hf.cli import main as tireid
from tireid_hf.retrieval import GalleryIndex, embed_images, embed_texts
from tireid_hf.retrieval.folder_search import (
    FILES_FILE, INDEX_FOLDER_NAME, image_files, read_queries, search_folder, update_folder_index,
)
from tireid_hf.visualize import RankedQuery, ranked_results_figure

TEXTS = ["a woman in a red coat", "a man with a black backpack and blue jeans"]
# the photo folder: 10 images in three formats and folders (one upper-case suffix), a text file that is
# not an image by its suffix, and a .jpg that does not decode
LAYOUT = ["a.jpg", "b.jpeg", "c.JPG", "d.png", "sub/e.png", "sub/f.webp", "sub/deeper/g.webp", "sub/deeper/h.png",
          "sub/deeper/i.jpg", "j.png"]
# each update warns about broken.jpg; the tests that check the warning catch it with pytest.warns
pytestmark = pytest.mark.filterwarnings("ignore:.*broken.jpg. not a readable image")


@pytest.fixture
def photos(tmp_path, small_test_split):
    folder = tmp_path / "photos"
    for name, image in zip(LAYOUT, small_test_split["image"]):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        image.convert("RGB").save(folder / name, format={".png": "PNG", ".webp": "WEBP"}.get(Path(name).suffix, "JPEG"),
                                  **({"lossless": True} if name.endswith(".webp") else {}))
    (folder / "notes.txt").write_text("not a photo")
    (folder / "broken.jpg").write_bytes(b"this is not a JPEG")
    return folder


def read_rgb(path):
    with Image.open(path) as image:
        return image.convert("RGB")


def expected_embeddings(model, processor, folder, names):
    return embed_images(model, processor, [read_rgb(folder / name) for name in names], show_progress=False)


def test_image_files_are_every_photo_under_the_folder_by_suffix(photos):
    found = image_files(photos)
    assert list(found) == sorted(LAYOUT + ["broken.jpg"])
    assert found["a.jpg"] == ((photos / "a.jpg").stat().st_size, (photos / "a.jpg").stat().st_mtime_ns)


def test_folder_is_embedded_once_and_then_only_its_new_changed_and_deleted_files(saved_model, tiny_processor, photos,
                                                                                   small_test_split):
    model, _ = saved_model
    with pytest.warns(UserWarning, match=r"broken\.jpg: not a readable image, skipped") as caught:
        first = update_folder_index(model, tiny_processor, photos, show_progress=False)
    assert len(caught) == 1
    names = sorted(LAYOUT)
    assert first.embedded == names and first.reused == 0 and first.removed == []
    assert [path for path, _ in first.skipped] == ["broken.jpg"]
    assert first.index.ids == names and first.location == photos / INDEX_FOLDER_NAME
    torch.testing.assert_close(first.index.embeddings, expected_embeddings(model, tiny_processor, photos, names),
                               atol=1e-6, rtol=0)
    # the ranking is the model's own: cosine of the text and image embeddings, best first
    ranked = search_folder(first, TEXTS, k=4)
    scores = embed_texts(model, tiny_processor, TEXTS, show_progress=False) @ first.index.embeddings.T
    for row, hits in enumerate(ranked):
        top = scores[row].topk(4)
        assert [path for path, _ in hits] == [names[i] for i in top.indices.tolist()]
        assert [score for _, score in hits] == pytest.approx(top.values.tolist(), abs=1e-6)

    second = update_folder_index(model, tiny_processor, photos, show_progress=False)
    assert second.embedded == [] and second.reused == 10 and len(second.skipped) == 1
    assert torch.equal(second.index.embeddings, first.index.embeddings)

    changed = photos / "sub/e.png"
    small_test_split["image"][0].convert("RGB").save(changed)  # another picture under the same name
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a later mtime whatever the clock's step
    third = update_folder_index(model, tiny_processor, photos, show_progress=False)
    assert third.embedded == ["sub/e.png"] and third.reused == 9
    torch.testing.assert_close(third.index.embeddings[names.index("sub/e.png")],
                               expected_embeddings(model, tiny_processor, photos, ["sub/e.png"])[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(third.index.embeddings[names.index("a.jpg")], first.index.embeddings[0], atol=0, rtol=0)

    small_test_split["image"][3].convert("RGB").save(photos / "sub" / "new.png")
    fourth = update_folder_index(model, tiny_processor, photos, show_progress=False)
    assert fourth.embedded == ["sub/new.png"] and fourth.reused == 10 and len(fourth.index) == 11

    (photos / "d.png").unlink()
    fifth = update_folder_index(model, tiny_processor, photos, show_progress=False)
    assert fifth.embedded == [] and fifth.removed == ["d.png"] and len(fifth.index) == 10
    assert "d.png" not in fifth.index.ids
    assert all(path != "d.png" for hits in search_folder(fifth, TEXTS, k=10) for path, _ in hits)
    # what is on disk is that index, with each file's key
    stored = GalleryIndex.load(photos / INDEX_FOLDER_NAME, model=model, processor=tiny_processor)
    assert stored.ids == fifth.index.ids
    keys = json.loads((photos / INDEX_FOLDER_NAME / FILES_FILE).read_text())
    assert keys == {path: list(key) for path, key in image_files(photos).items() if path != "broken.jpg"}


def test_index_of_another_model_or_unreadable_is_rebuilt(saved_model, tiny_processor, photos, tmp_path):
    model, _ = saved_model
    index_dir = tmp_path / "elsewhere"
    with pytest.warns(UserWarning):
        update_folder_index(model, tiny_processor, photos, index_dir, show_progress=False)
    assert not (photos / INDEX_FOLDER_NAME).exists() and (index_dir / FILES_FILE).is_file()
    other = ModelTester("clip_reid").model(seed=1).export_for_inference().eval()
    with pytest.warns(UserWarning, match="built by another model"):
        again = update_folder_index(other, tiny_processor, photos, index_dir, show_progress=False)
    assert len(again.embedded) == 10
    (index_dir / FILES_FILE).write_text("[]")
    with pytest.warns(UserWarning, match=f"{FILES_FILE} does not list"):
        assert len(update_folder_index(other, tiny_processor, photos, index_dir, show_progress=False).embedded) == 10


def test_read_queries_takes_texts_then_the_lines_of_the_file(tmp_path):
    (tmp_path / "queries.txt").write_text("  a man in a red jacket \n\nsomeone with a bag\n")
    assert read_queries(["first"], tmp_path / "queries.txt") == ["first", "a man in a red jacket", "someone with a bag"]
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(ValueError, match=r"--queries .*empty\.txt: holds no query"):
        read_queries([], tmp_path / "empty.txt")
    with pytest.raises(ValueError, match=r"--queries .*missing\.txt: cannot be read"):
        read_queries([], tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="--text: a query is empty"):
        read_queries(["  "], None)
    with pytest.raises(ValueError, match="no query"):
        read_queries([], None)


def test_tireid_search_writes_ranked_json_and_reuses_the_index(saved_model, tiny_processor, photos, tmp_path, capsys):
    model, folder = saved_model
    (tmp_path / "queries.txt").write_text(TEXTS[1] + "\n")
    out = tmp_path / "ranked.json"
    assert tireid(["search", "--model", str(folder), "--images", str(photos), "--text", TEXTS[0],
                   "--queries", str(tmp_path / "queries.txt"), "--k", "3", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("broken.jpg") == 1 and "tireid search: warning:" in captured.err
    assert "10 images (10 embedded now, 0 reused, 0 removed, 1 unreadable skipped)" in captured.out
    report = json.loads(out.read_text())
    assert set(report) == {"model", "images", "index", "k", "min_score", "num_images", "skipped", "queries"}
    assert report["k"] == 3 and report["min_score"] is None and report["num_images"] == 10
    assert [entry["path"] for entry in report["skipped"]] == [str(photos / "broken.jpg")]
    expected = search_folder(update_folder_index(model, tiny_processor, photos, show_progress=False), TEXTS, k=3)
    assert [query["text"] for query in report["queries"]] == TEXTS
    for query, hits in zip(report["queries"], expected):
        assert [set(result) for result in query["results"]] == [{"path", "score"}] * 3
        assert [result["path"] for result in query["results"]] == [str(photos / path) for path, _ in hits]
        assert [result["score"] for result in query["results"]] == pytest.approx([score for _, score in hits], abs=1e-6)
        assert all(Path(result["path"]).is_file() for result in query["results"])
    for name, _ in expected[0]:
        assert f"{photos / name}" in captured.out
    # the second call embeds nothing
    tireid(["search", "--model", str(folder), "--images", str(photos), "--text", TEXTS[0]])
    assert "(0 embedded now, 10 reused" in capsys.readouterr().out


def test_tireid_search_draws_the_png_in_visualize_style(saved_model, tiny_processor, photos, tmp_path, capsys):
    model, folder = saved_model
    out = tmp_path / "ranked.png"
    assert tireid(["search", "--model", str(folder), "--images", str(photos), "--text", TEXTS[0], "--text", TEXTS[1],
                   "--k", "3", "--index", str(tmp_path / "index"), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    with pytest.warns(UserWarning, match="broken"):
        ranked = search_folder(update_folder_index(model, tiny_processor, photos, show_progress=False), TEXTS, k=3)
    rows = [RankedQuery(text, None, [read_rgb(photos / path) for path, _ in hits], [None] * 3, [score for _, score in hits])
            for text, hits in zip(TEXTS, ranked)]
    expected = ranked_results_figure(rows, title=f"{folder} on {photos}: top 3")
    with Image.open(out) as figure:
        assert figure.format == "PNG" and figure.size == expected.size
        assert figure.convert("RGB").tobytes() == expected.tobytes()


def test_min_score_leaves_out_low_scores_and_says_no_match(saved_model, tiny_processor, photos, tmp_path, capsys):
    model, folder = saved_model
    out = tmp_path / "ranked.json"
    tireid(["search", "--model", str(folder), "--images", str(photos), "--text", TEXTS[0], "--min-score", "2",
            "--out", str(out)])  # a cosine never reaches 2
    assert "no match (no image scores >= 2.0000)" in capsys.readouterr().out
    assert json.loads(out.read_text())["queries"][0]["results"] == []
    tireid(["search", "--model", str(folder), "--images", str(photos), "--text", TEXTS[0], "--min-score", "2",
            "--out", str(tmp_path / "none.png")])
    assert (tmp_path / "none.png").is_file()
    with pytest.raises(SystemExit, match=rf"the model {folder} carries no score threshold"):
        tireid(["search", "--model", str(folder), "--images", str(photos), "--text", TEXTS[0], "--min-score", "model"])
    # a model whose config carries a threshold: by default only the photos scoring at least that are listed
    scores = sorted(hit[1] for hit in search_folder(update_folder_index(model, tiny_processor, photos, show_progress=False), TEXTS[:1], k=10)[0])
    threshold = (scores[6] + scores[7]) / 2  # between the 4th and 3rd best
    with_threshold = tmp_path / "model-with-threshold"
    shutil.copytree(folder, with_threshold)
    config = json.loads((with_threshold / "config.json").read_text())
    (with_threshold / "config.json").write_text(json.dumps({**config, "score_threshold": threshold}))
    tireid(["search", "--model", str(with_threshold), "--images", str(photos), "--text", TEXTS[0], "--out", str(out)])
    results = json.loads(out.read_text())["queries"][0]["results"]
    assert [result["score"] for result in results] == pytest.approx(scores[7:][::-1], abs=1e-6)
    assert json.loads(out.read_text())["min_score"] == pytest.approx(threshold)
    tireid(["search", "--model", str(with_threshold), "--images", str(photos), "--text", TEXTS[0], "--min-score", "none",
            "--out", str(out)])
    assert len(json.loads(out.read_text())["queries"][0]["results"]) == 10


def test_tireid_search_bad_arguments_name_what_is_wrong(saved_model, photos, tmp_path):
    _, folder = saved_model
    search = ["search", "--model", str(folder), "--images"]
    with pytest.raises(SystemExit, match=r"--images .*nowhere: no such folder"):
        tireid([*search, str(tmp_path / "nowhere"), "--text", "a man"])
    with pytest.raises(SystemExit, match=r"--out .*ranked\.txt: expected a \.json or \.png"):
        tireid([*search, str(photos), "--text", "a man", "--out", str(tmp_path / "ranked.txt")])
    with pytest.raises(SystemExit, match="no query"):
        tireid([*search, str(photos)])


def test_a_photo_linked_from_outside_the_folder_is_skipped_and_listed(saved_model, tiny_processor, photos, tmp_path):
    """A symbolic link under the folder to a photo outside it is not read (where it resolves is checked, as
    the dataset readers check their image paths); a link to a photo inside the folder is."""
    model, _ = saved_model
    outside = tmp_path / "elsewhere.jpg"
    shutil.copy(photos / "a.jpg", outside)
    (photos / "link-out.jpg").symlink_to(outside)
    (photos / "link-in.jpg").symlink_to(photos / "a.jpg")
    with pytest.warns(UserWarning, match=r"link-out\.jpg: not a readable image, skipped \(.*outside the photo folder"):
        result = update_folder_index(model, tiny_processor, photos, show_progress=False)
    assert [path for path, _ in result.skipped] == ["broken.jpg", "link-out.jpg"]
    assert "link-in.jpg" in result.index.ids and "link-out.jpg" not in result.index.ids
