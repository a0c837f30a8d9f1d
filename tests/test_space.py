"""The demo Space `spaces/tireid-demo/`: its callbacks, a `gradio_client` call against the app served on
localhost, and a real browser (Debian's chromium driven by Playwright) using the page."""

import contextlib
import importlib.util
import os
import shutil
import socket
import sys
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from tester import IMAGE_SIZE, ModelTester
from tireid_hf.data import load_tireid_dataset
from tireid_hf.processing import TIReIDProcessor

SPACE = Path(__file__).resolve().parents[1] / "spaces" / "tireid-demo"
SMALL = dict(num_train_ids=4, num_validation_ids=3, num_test_ids=5, images_per_id=2)
CHROMIUM = "/usr/bin/chromium"
# How long a browser test waits for a state of the page: a bound for a stuck page on a loaded machine,
# never a duration the test relies on (every wait ends as soon as the state is reached).
STATE_TIMEOUT_MS = 180_000
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def load_app():
    spec = importlib.util.spec_from_file_location("tireid_demo_app", SPACE / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


app = load_app()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def gallery():
    return app.Gallery.from_split(load_tireid_dataset("synthetic", **SMALL)["test"], "synthetic:test:small")


def serve(method, gallery, cache_dir):
    """The app over a tiny random `method` model, launched on a free localhost port."""
    model, processor = ModelTester(method).model().eval(), TIReIDProcessor.for_image_size(IMAGE_SIZE)
    demo = app.build_demo(model, processor, gallery, cache_dir=cache_dir)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return demo, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def served(gallery, tmp_path_factory):
    demo, url = serve("clip_reid", gallery, tmp_path_factory.mktemp("cache"))
    yield url
    demo.close()


def test_space_folder_is_a_gradio_space():
    header = (SPACE / "README.md").read_text().split("---")[1]
    assert "sdk: gradio" in header and "app_file: app.py" in header
    assert "tireid-hf[demo]" in (SPACE / "requirements.txt").read_text()


def test_gallery_embeddings_are_cached_by_model_fingerprint(gallery, tmp_path):
    model, processor = ModelTester("clip_reid").model().eval(), TIReIDProcessor.for_image_size(IMAGE_SIZE)
    built = app.cached_index(model, processor, gallery, tmp_path)
    (folder,) = tmp_path.iterdir()
    loaded = app.cached_index(model, processor, gallery, tmp_path)  # from disk now
    assert loaded.fingerprint == built.fingerprint and (loaded.embeddings == built.embeddings).all()
    app.cached_index(ModelTester("clip_reid").model(seed=1).eval(), processor, gallery, tmp_path)
    assert len(list(tmp_path.iterdir())) == 2  # another model: another key


def test_gradio_client_searches_and_gets_messages_for_bad_input(served, gallery):
    client = Client(served, verbose=False)
    example = gallery.examples[0]
    results, status = client.predict(example, 4, False, api_name="/search")
    assert len(results) == 4 and results[0]["caption"].startswith("#1 · ")
    pid = gallery.caption_pids[example]
    assert f"Identity {pid}: R@1 = " in status and "AP = " in status
    assert all(item["caption"][-1] in "✓✗" for item in results)  # a known identity: every result is marked
    results, status = client.predict("someone in a hat", 3, False, api_name="/search")
    assert len(results) == 3 and "no matches are marked" in status
    for query, k, message in [("   ", 3, "the query is empty"), ("red " * 80, 3, "tokens long; the model reads at most 77"),
                              ("a man", 2.5, "k must be a whole number from 1 to 10")]:
        results, status = client.predict(query, k, False, api_name="/search")
        assert results == [] and message in status, (query, k, status)
    for k, message in [(0, "less than minimum value 1"), (11, "greater than maximum value 10")]:  # the slider's own check
        with pytest.raises(AppError, match=message):
            client.predict("a man", k, False, api_name="/search")


def test_uit_restoration_panel_and_non_image_upload(gallery, tmp_path):
    demo, url = serve("uit", gallery, tmp_path / "cache")
    try:
        client = Client(url, verbose=False)
        not_an_image = tmp_path / "notes.png"
        not_an_image.write_text("not an image")
        figure, status = client.predict(handle_file(str(not_an_image)), 0, "a man in red", api_name="/restore")
        assert figure is None and "notes.png is not an image" in status
        picture = tmp_path / "person.png"
        Image.new("RGB", (32, 64), (200, 30, 30)).save(picture)
        figure, status = client.predict(handle_file(str(picture)), 0, "a man in red", api_name="/restore")
        assert status == "Restored." and Image.open(figure).width == 3 * IMAGE_SIZE[1] + 4 * 8
        figure, status = client.predict(None, 99, "a man in red", api_name="/restore")
        assert "Gallery image must be a number from 0 to 9" in status
    finally:
        demo.close()


@contextlib.contextmanager
def browser_page(url: str):
    """A page of headless Debian chromium (driven by Playwright) at `url`; fails when chromium is missing."""
    assert os.path.exists(CHROMIUM), (
        f"{CHROMIUM} is missing: the browser tests drive Debian's chromium. Install it with "
        "`apt-get update && apt-get install -y chromium` (.ci/run does this); never `playwright install`."
    )
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(STATE_TIMEOUT_MS)  # actions wait for their element as long as expects do
            expect.set_options(timeout=STATE_TIMEOUT_MS)
            page.goto(url)
            yield page
        finally:
            browser.close()


def test_real_browser_types_a_query_and_sees_k_results(served, gallery, tmp_path):
    from playwright.sync_api import expect

    with browser_page(served) as page:
        page.locator("#query textarea").fill("a person in a red jacket and black trousers")
        k_box = page.locator("#k input[type=number]")
        k_box.fill("4")
        k_box.press("Enter")
        page.locator("#search").click()
        expect(page.locator("#results img")).to_have_count(4)
        expect(page.locator("#status")).to_contain_text("Top 4 of 10 gallery images")
        save_screenshot(page, tmp_path, "space-results.png")

        page.get_by_role("button", name=gallery.examples[0][:20]).click()  # an example: its person is known
        # the example reaches the textbox through an event of its own: search only once it is there
        expect(page.locator("#query textarea")).to_have_value(gallery.examples[0])
        page.locator("#search").click()
        expect(page.locator("#status")).to_contain_text(f"Identity {gallery.caption_pids[gallery.examples[0]]}: R@1")
        expect(page.locator("#results img")).to_have_count(4)
        save_screenshot(page, tmp_path, "space-marked.png")

        page.locator("#query textarea").fill("")
        page.locator("#search").click()
        expect(page.locator("#status")).to_contain_text("the query is empty")
        page.locator("#query textarea").fill("red " * 80)
        page.locator("#search").click()
        expect(page.locator("#status")).to_contain_text("tokens long; the model reads at most 77")
        save_screenshot(page, tmp_path, "space-error.png")
        page.locator("#query textarea").fill("a man")
        k_box.fill("99")  # the page cannot send k out of range: the slider clamps it to the gallery size
        page.locator("#search").click()
        expect(page.locator("#status")).to_contain_text("Top 10 of 10 gallery images")
        expect(k_box).to_have_value("10")


def test_real_browser_shows_the_non_image_upload_message(gallery, tmp_path):
    from playwright.sync_api import expect

    demo, url = serve("uit", gallery, tmp_path / "cache")
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image")
    try:
        with browser_page(url) as page:
            page.get_by_text("Text-guided restoration (UIT)").click()
            page.locator("#restore-upload input[type=file]").set_input_files(str(not_an_image))
            # The file's name shows while it is still uploading; its download link only once the upload is
            # done and the component holds the file (a click before that restores gallery image 0).
            uploaded = page.locator('#restore-upload [data-testid="download-link"][download="notes.png"]')
            expect(uploaded).to_be_visible()
            page.locator("#restore-caption textarea").fill("a man in red")
            expect(page.locator("#restore-caption textarea")).to_have_value("a man in red")
            page.locator("#restore").click()
            expect(page.locator("#restore-status")).to_contain_text("notes.png is not an image")
    finally:
        demo.close()


def test_cada_rerank_switch(gallery, tmp_path):
    demo, url = serve("cada", gallery, tmp_path / "cache")
    try:
        client = Client(url, verbose=False)
        results, status = client.predict(gallery.examples[0], 3, True, api_name="/search")
        assert len(results) == 3 and "re-ranked" in status and "Identity" in status
    finally:
        demo.close()


def save_screenshot(page, tmp_path, name: str) -> None:
    """Writes the page to `tmp_path/name` and, when TIREID_TEST_ARTIFACTS is set, copies it there."""
    page.screenshot(path=str(tmp_path / name), full_page=True)
    artifacts = os.environ.get("TIREID_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, Path(artifacts) / name)


def test_space_reads_a_prebuilt_index_and_never_embeds_the_gallery(gallery, tmp_path):
    model, processor = ModelTester("clip_reid").model().eval(), TIReIDProcessor.for_image_size(IMAGE_SIZE)
    from tireid_hf.retrieval import GalleryIndex

    GalleryIndex.build(model, processor, gallery.images, ids=gallery.names, show_progress=False,
                       precision="int8", rescore=5).save(tmp_path / "index")
    embed_image = model.get_image_features
    model.get_image_features = lambda **inputs: pytest.fail("the Space embedded gallery images at start-up")
    demo = app.build_demo(model, processor, gallery, cache_dir=tmp_path / "cache", index_dir=tmp_path / "index")
    assert not (tmp_path / "cache").exists()
    state = app.Demo(model, processor, gallery, app.prebuilt_index(model, processor, gallery, tmp_path / "index"))
    items, status = state.search(gallery.examples[0], 3)
    assert len(items) == 3 and "Identity" in status
    model.get_image_features = embed_image
    demo.close()
    other = app.Gallery(gallery.images[:-1], gallery.ids[:-1], "fewer", gallery.names[:-1])
    with pytest.raises(ValueError, match=r"--index .*index: its 10 image ids are not the 9 images of the gallery fewer"):
        app.prebuilt_index(model, processor, other, tmp_path / "index")
    with pytest.raises(ValueError, match="built by another model"):
        app.prebuilt_index(ModelTester("clip_reid").model(seed=1).eval(), processor, gallery, tmp_path / "index")


def test_results_below_the_models_threshold_are_left_out_and_none_left_says_no_match(gallery, tmp_path):
    from tireid_hf.retrieval import embed_texts

    model, processor = ModelTester("clip_reid").model().eval(), TIReIDProcessor.for_image_size(IMAGE_SIZE)
    index = app.cached_index(model, processor, gallery, tmp_path)
    query = gallery.examples[0]
    scores = index.search_embeddings(embed_texts(model, processor, [query], show_progress=False), k=5).scores[0].tolist()
    everything, status = app.Demo(model, processor, gallery, index).search(query, 5)
    assert len(everything) == 5 and status.startswith("Top 5 of 10 gallery images.")
    model.config.score_threshold, model.config.score_threshold_fpr = (scores[1] + scores[2]) / 2, 0.001
    items, status = app.Demo(model, processor, gallery, index).search(query, 5)
    assert [caption for _, caption in items] == [caption for _, caption in everything[:2]]
    assert status.startswith(f"Top 2 of 10 gallery images, those above the threshold (score "
                             f"{model.config.score_threshold:.3f} at FPR 0.001).")
    model.config.score_threshold = 1.5  # above any cosine
    items, status = app.Demo(model, processor, gallery, index).search(query, 5)
    assert items == [] and status.startswith("No match above the threshold (score 1.500 at FPR 0.001) among the 10 "
                                             "gallery images.")


def test_batched_search_answers_each_query_as_alone(gallery, tmp_path):
    model, processor = ModelTester("clip_reid").model().eval(), TIReIDProcessor.for_image_size(IMAGE_SIZE)
    state = app.Demo(model, processor, gallery, app.cached_index(model, processor, gallery, tmp_path))
    queries = [gallery.examples[0], "   ", "someone in a hat", gallery.examples[1], "a man"]
    ks = [4, 3, 2, 5, 2.5]
    batch_items, batch_statuses = state.search_batch(queries, ks, [False] * 5)
    for query, k, items, status in zip(queries, ks, batch_items, batch_statuses):
        alone_items, alone_status = state.search_batch([query], [k], [False])
        assert status == alone_status[0] and [caption for _, caption in items] == [c for _, c in alone_items[0]]
    assert "the query is empty" in batch_statuses[1] and "k must be a whole number" in batch_statuses[4]
    assert len(batch_items[0]) == 4 and len(batch_items[3]) == 5


def test_search_event_is_batched_and_answers_50_concurrent_users(gallery, tmp_path):
    """The queue settings the Space ships (chosen by benchmarks/bench_space.py): one batched worker;
    50 clients at once all get their own answer (no timing asserted: that is the benchmark's job)."""
    from concurrent.futures import ThreadPoolExecutor

    demo, url = serve("clip_reid", gallery, tmp_path / "cache")
    try:
        (search,) = [fn for fn in demo.fns.values() if fn.api_name == "search"]
        assert search.batch and search.max_batch_size == app.SEARCH_BATCH and search.concurrency_limit == app.SEARCH_WORKERS
        client = Client(url, verbose=False)
        queries = [gallery.examples[i % len(gallery.examples)] for i in range(50)]
        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(lambda query: client.predict(query, 3, False, api_name="/search"), queries))
        for query, (results, status) in zip(queries, answers):
            assert len(results) == 3 and f"Identity {gallery.caption_pids[query]}: R@1" in status
    finally:
        demo.close()


def test_space_runs_queries_on_the_onnx_encoders_of_its_model(gallery, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from tireid_hf.onnx_export import OnnxEncoders, export_onnx

    model, processor = ModelTester("clip_reid").model().eval(), TIReIDProcessor.for_image_size(IMAGE_SIZE)
    export_onnx(model, processor, tmp_path / "onnx")
    demo = app.build_demo(model, processor, gallery, cache_dir=tmp_path / "cache", onnx_dir=tmp_path / "onnx")
    demo.close()
    index = app.cached_index(model, processor, gallery, tmp_path / "cache")
    with_onnx = app.Demo(model, processor, gallery, index, OnnxEncoders(tmp_path / "onnx"))
    with_torch = app.Demo(model, processor, gallery, index)
    with_onnx.encoder.get_text_features = _counting(with_onnx.encoder.get_text_features)
    queries = gallery.examples[:3]
    onnx_items, onnx_statuses = with_onnx.search_batch(queries, [4] * 3, [False] * 3)
    torch_items, torch_statuses = with_torch.search_batch(queries, [4] * 3, [False] * 3)
    assert with_onnx.encoder.get_text_features.calls == 1  # the three queries in one ONNX call
    assert [[c for _, c in row] for row in onnx_items] == [[c for _, c in row] for row in torch_items]
    other = ModelTester("clip_reid").model(seed=1).eval()
    with pytest.raises(ValueError, match="exported from another model"):
        app.build_demo(other, processor, gallery, cache_dir=tmp_path / "cache", onnx_dir=tmp_path / "onnx")


def _counting(function):
    def counted(*args, **kwargs):
        counted.calls += 1
        return function(*args, **kwargs)

    counted.calls = 0
    return counted


@pytest.mark.parametrize("variable, flag, value", [("TIREID_THREADS", "--threads", "abc"), ("TIREID_THREADS", "--threads", "0"),
                                                   ("GRADIO_SERVER_PORT", "--port", "70000"),
                                                   ("GRADIO_SERVER_PORT", "--port", "-1")])
def test_numeric_flags_and_their_variables_are_refused_naming_the_flag(monkeypatch, capsys, variable, flag, value):
    """The Space's numbers, from the command line or from their environment variable, are checked by the
    range type the `tireid` flags use: argparse's one refusal naming the flag, never a traceback."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exit_info:
        app.parse_args(["--model", "any"])
    assert exit_info.value.code == 2 and f"argument {flag}: must be " in capsys.readouterr().err
    monkeypatch.delenv(variable)
    with pytest.raises(SystemExit):
        app.parse_args(["--model", "any", flag, value])
    assert f"argument {flag}: must be " in capsys.readouterr().err
    args = app.parse_args(["--model", "any", "--threads", "2", "--port", "7861"])
    assert (args.threads, args.port) == (2, 7861)


def test_a_gallery_image_linked_from_outside_the_folder_is_refused_naming_it(tmp_path):
    """--gallery DIR reads the images under DIR only: a link to a picture elsewhere is refused (where it
    resolves is checked, as for every dataset path); a link inside the folder is read."""
    folder, outside = tmp_path / "gallery", tmp_path / "elsewhere.png"
    folder.mkdir()
    Image.new("RGB", (32, 96), (200, 30, 40)).save(outside)
    Image.new("RGB", (32, 96), (20, 30, 200)).save(folder / "a.png")
    (folder / "b.png").symlink_to(folder / "a.png")
    assert app.load_gallery(str(folder)).names == ["a.png", "b.png"]
    (folder / "c.png").symlink_to(outside)
    with pytest.raises(app.TIReIDInputError, match=r"c\.png resolves to .*elsewhere\.png, outside the --gallery folder"):
        app.load_gallery(str(folder))
