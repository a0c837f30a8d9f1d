"""Ranked-results pictures: which queries are drawn, what is ranked, how it is drawn, `tireid visualize`."""

import pytest
import torch
from PIL import Image, ImageFont

from tireid_hf.cli import main as tireid
from tireid_hf.retrieval import split_queries
from tireid_hf.visualize import (
    MATCH_COLOURS,
    MARGIN,
    RankedQuery,
    choose_queries,
    rank_split_queries,
    ranked_results_figure,
)
from tester import ModelTester

def test_split_queries_are_every_caption_in_row_order_with_its_rows_pid(small_test_split):
    texts, pids = split_queries(small_test_split)
    assert texts == [caption for row in small_test_split["captions"] for caption in row]
    assert pids == [pid for pid, row in zip(small_test_split["pid"], small_test_split["captions"]) for _ in row]


def test_choose_queries_takes_the_first_query_of_distinct_identities_reproducibly():
    pids = [7, 7, 3, 3, 3, 9, 1, 1]
    chosen = choose_queries(pids, 3, seed=0)
    assert len({pids[i] for i in chosen}) == 3
    assert all(i == pids.index(pids[i]) for i in chosen)  # each identity's first query
    assert chosen == choose_queries(pids, 3, seed=0)
    assert sorted(choose_queries(pids, 4, seed=5)) == [0, 2, 5, 6]  # every identity once
    for bad in (0, 5):
        with pytest.raises(ValueError, match="between 1 and the number of identities \\(4\\)"):
            choose_queries(pids, bad)


def test_first_match_is_the_rank_of_the_first_true_match():
    image = Image.new("RGB", (4, 8))
    assert RankedQuery("q", 1, [image] * 3, [False, True, True], [0.3, 0.2, 0.1]).first_match == 2
    assert RankedQuery("q", 1, [image] * 2, [False, False], [0.3, 0.2]).first_match is None
    assert RankedQuery("q", None, [image], [None], [0.3]).first_match is None


def test_rank_split_queries_shows_the_models_own_ranking_marked_by_identity(small_test_split, tiny_processor):
    model = ModelTester("clip_reid").model().eval()
    texts, pids = split_queries(small_test_split)
    free_text = "a woman in a red coat"
    ranked = rank_split_queries(model, tiny_processor, small_test_split, query_indices=[0, 5], texts=[free_text], k=4,
                                show_progress=False)
    images = list(small_test_split["image"])
    with torch.no_grad():
        scores = (model.get_text_features(**tiny_processor(text=[texts[0], texts[5], free_text]))
                  @ model.get_image_features(**tiny_processor(images=images)).T)
    expected = scores.topk(4, dim=1)
    assert [query.text for query in ranked] == [texts[0], texts[5], free_text]
    assert [query.pid for query in ranked] == [pids[0], pids[5], None]
    for query, indices, values in zip(ranked, expected.indices.tolist(), expected.values):
        assert [image.tobytes() for image in query.images] == [images[i].tobytes() for i in indices]
        torch.testing.assert_close(torch.tensor(query.scores), values, atol=1e-5, rtol=0)
        marks = [None] * 4 if query.pid is None else [small_test_split["pid"][i] == query.pid for i in indices]
        assert query.relevant == marks
    with pytest.raises(ValueError, match="query index 20 is out of range: the split has 20 captions \\(0 to 19\\)"):
        rank_split_queries(model, tiny_processor, small_test_split, query_indices=[20], show_progress=False)
    with pytest.raises(ValueError, match="no queries"):
        rank_split_queries(model, tiny_processor, small_test_split, show_progress=False)


def test_ranked_results_figure_lays_out_one_framed_row_per_query():
    light, dark = Image.new("RGB", (16, 32), (220, 220, 255)), Image.new("RGB", (16, 32), (90, 90, 90))
    marked = RankedQuery("a man in a blue shirt", 3, [light, dark, light], [False, True, False], [0.9, 0.8, 0.7])
    free = RankedQuery("free text", None, [dark, light], [None, None], [0.5, 0.4])
    figure = ranked_results_figure([marked, free], title="title", thumbnail_height=64, text_width=120)
    cell = 32  # the 1:2 images scaled to 64 pixels high
    assert figure.width == 2 * MARGIN + 120 + 3 * (cell + MARGIN)
    # frames 2 pixels wide (64 // 32) around 32 x 64 thumbnails: 32 * 64 - 28 * 60 = 368 pixels each,
    # one green (the true match) and two red frames; the free-text row adds no frame
    colours = {colour: count for count, colour in figure.getcolors(maxcolors=1 << 16)}
    assert colours[MATCH_COLOURS[True]] == 368
    assert colours[MATCH_COLOURS[False]] == 2 * 368
    line_height = ImageFont.load_default().getbbox("Ag")[3] + 2
    thumbnail_top = MARGIN + 2 * line_height + MARGIN // 2 + line_height  # title, legend, the "#rank score" label
    for column, hit in enumerate(marked.relevant):
        left = 2 * MARGIN + 120 + column * (cell + MARGIN)
        assert figure.getpixel((left, thumbnail_top + 32)) == MATCH_COLOURS[hit]  # the frame's left edge
        assert figure.getpixel((left + 16, thumbnail_top + 32)) == marked.images[column].getpixel((0, 0))
    free_only = ranked_results_figure([free], thumbnail_height=64, text_width=120)
    assert free_only.width == 2 * MARGIN + 120 + 2 * (cell + MARGIN)
    assert not {MATCH_COLOURS[True], MATCH_COLOURS[False]} & {colour for _, colour in free_only.getcolors(1 << 16)}
    with pytest.raises(ValueError, match="at least one query"):
        ranked_results_figure([])


def test_tireid_visualize_writes_the_figure_of_the_chosen_queries(small_test_split, tiny_processor, tmp_path, capsys, small_synthetic_options):
    model = ModelTester("clip_reid").model().export_for_inference()
    model.save_pretrained(tmp_path / "model")
    tiny_processor.save_pretrained(tmp_path / "model")
    common = ["visualize", "--model", str(tmp_path / "model"), "--dataset", "synthetic", *small_synthetic_options, "--k", "5"]
    assert tireid([*common, "--num-queries", "3"]) == 0
    figure = Image.open(tmp_path / "model" / "ranked_results_synthetic_test.png")
    width, height = small_test_split[0]["image"].size
    cell = round(width * 128 / height)  # thumbnails 128 pixels high by default
    assert figure.width == 2 * MARGIN + 240 + 5 * (cell + MARGIN) and figure.height > 3 * 128
    assert "3 queries, top 5; a true match at rank 1 for" in capsys.readouterr().out
    assert tireid([*common, "--query-index", "2", "--text", "a tall man", "--output", str(tmp_path / "two.png")]) == 0
    assert Image.open(tmp_path / "two.png").height < figure.height
    with pytest.raises(SystemExit, match="tireid visualize: num_queries must be between 1 and the number of identities \\(5\\)"):
        tireid([*common, "--num-queries", "6", "--output", str(tmp_path / "bad.png")])
    with pytest.raises(SystemExit, match="no split 'dev'"):
        tireid([*common, "--split", "dev", "--output", str(tmp_path / "bad.png")])
    assert not (tmp_path / "bad.png").exists()
