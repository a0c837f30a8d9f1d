"""tireid-demo: search a gallery of pedestrian images by a sentence, with a tireid-hf model.

    python spaces/tireid-demo/app.py --model out/demo-clip_reid            # http://127.0.0.1:7860
    TIREID_MODEL=org/lcr2s-cuhk TIREID_GALLERY=path/to/images python app.py

The model is a folder written by train.py / `tireid push --dry-run` or a Hub id (`--model` /
`TIREID_MODEL`, else `space_settings.json` beside this file, which `tireid push-space` writes). The gallery (`--gallery` / `TIREID_GALLERY`) is a folder of images, a folder written
by `tireid data prepare` (its test split), or by default the synthetic test split. Its embeddings are
read from an index written by `tireid index build` (`--index` / `TIREID_INDEX`; a large gallery is
never embedded at start-up), else computed once by `GalleryIndex` (with a progress bar) and cached on
disk (`--cache-dir` / `TIREID_CACHE`) under a key of the model fingerprint and the gallery's content.
Searches are batched: concurrent users' queries go through the text encoder together (SEARCH_BATCH,
chosen by benchmarks/bench_space.py); with `--onnx` / `TIREID_ONNX` (a folder of `tireid export onnx`)
that encoder runs on onnxruntime. Where the gallery has identities, picking an
example caption (or typing any caption of the split) marks the true matches and shows R@1 / AP. A model
whose config carries the score threshold train.py picks on validation (`score_threshold`) shows only the
results scoring at least that, and "no match above the threshold" when none does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import torch

import tireid_hf  # noqa: F401  (registers the tireid model classes with the Auto classes)
from tireid_hf.data import load_tireid_dataset
from tireid_hf.errors import TIReIDInputError, refused_as_one_line, refusing
from tireid_hf.files import atomic_file, resolve_inside
from tireid_hf.images import ImageFileError, read_image
from tireid_hf.loading import load_model_and_processor
from tireid_hf.metrics import rank_metrics
from tireid_hf.ranges import NumberRange
from tireid_hf.retrieval import GalleryIndex, embed_texts, model_fingerprint
from tireid_hf.visualize import ranked_result, restoration_figure

MAX_K = 50
# Gradio queue settings of the search event, chosen by benchmarks/bench_space.py (RESULTS.md): up to
# SEARCH_BATCH waiting queries are answered by one batched call, SEARCH_WORKERS such calls at a time.
SEARCH_BATCH = 50
SEARCH_WORKERS = 2
NUM_EXAMPLES = 8
RESULT_KINDS = {True: "match", False: "other", None: "unknown"}  # file names of drawn results by relevance
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tireid-demo"
SETTINGS_FILE = Path(__file__).resolve().with_name("space_settings.json")


@dataclass
class Gallery:
    """The searched images, their ids, and (where known) their identities and captions."""

    images: list
    ids: list[str]
    source: str
    names: list[str] = field(default_factory=list)  # image paths / file names: the ids `tireid index build` gives
    pids: list[int] | None = None
    caption_pids: dict[str, int] = field(default_factory=dict)  # caption -> pid, captions of one pid only
    examples: list[str] = field(default_factory=list)

    @classmethod
    def from_split(cls, split, source: str) -> "Gallery":
        """A dataset split (one row per image: image, image_path, pid, captions)."""
        pids, captions = [int(pid) for pid in split["pid"]], list(split["captions"])
        owners: dict[str, set[int]] = {}
        for pid, row in zip(pids, captions):
            for caption in row:
                owners.setdefault(caption, set()).add(pid)
        caption_pids = {caption: next(iter(found)) for caption, found in owners.items() if len(found) == 1}
        examples, seen = [], set()
        for pid, row in zip(pids, captions):
            unique = [caption for caption in row if caption in caption_pids]
            if pid not in seen and unique and len(examples) < NUM_EXAMPLES:
                examples.append(unique[0])
                seen.add(pid)
        paths = list(split["image_path"])
        return cls([image.convert("RGB") for image in split["image"]], paths, source, paths, pids, caption_pids, examples)

    @classmethod
    def from_folder(cls, folder: Path) -> "Gallery":
        """Every image file of `folder` (sorted by name); no identities. A file that is not a readable
        image (:func:`~tireid_hf.images.read_image`), or a link resolving outside `folder`, raises
        :class:`TIReIDInputError` naming it."""
        files = sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise TIReIDInputError(f"--gallery {folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        images = []
        for path in files:
            try:
                images.append(read_image(resolve_inside(folder, path.name, "the --gallery folder")))
            except ImageFileError as error:
                raise TIReIDInputError(f"--gallery {folder}: {path.name}: {error.reason}") from None
        ids = [f"{path.name}:{path.stat().st_size}:{path.stat().st_mtime_ns}" for path in files]
        return cls(images, ids, str(folder.resolve()), [path.name for path in files])

    def cache_key(self, fingerprint: str) -> str:
        """Key of this gallery's embeddings by `fingerprint` (the model's weights)."""
        return hashlib.sha256("\n".join([fingerprint, self.source, *self.ids]).encode()).hexdigest()[:24]


def load_gallery(source: str | None) -> Gallery:
    """`source`: a folder of images, a `tireid data prepare` folder (read and checked row by row by
    `load_tireid_dataset`: a missing column, a column of the wrong type, a damaged Parquet shard or image
    raises its `DatasetFormatError` naming the file and column), or None / "synthetic"."""
    if source in (None, "", "synthetic"):
        return Gallery.from_split(load_tireid_dataset("synthetic")["test"], "synthetic:test")
    folder = Path(source)
    if not folder.is_dir():
        raise TIReIDInputError(f"--gallery {source}: not a folder (give a folder of images, a prepared dataset, or "
                               "'synthetic')")
    if (folder / "data").is_dir():
        return Gallery.from_split(load_tireid_dataset(folder)["test"], f"{folder.resolve()}:test")
    return Gallery.from_folder(folder)


def load_model(name_or_path: str):
    """A tireid model (eval mode) and its processor from a folder or a Hub id; a bad one raises
    :class:`tireid_hf.errors.TIReIDInputError` naming it and the cause."""
    model, processor = load_model_and_processor(name_or_path)
    return model.eval(), processor


def cached_index(model, processor, gallery: Gallery, cache_dir: str | os.PathLike) -> GalleryIndex:
    """The gallery's index: loaded from `cache_dir` when this model embedded it before, else built
    (with a progress bar) and saved there."""
    folder = Path(cache_dir) / gallery.cache_key(model_fingerprint(model))
    if (folder / "index.json").is_file():
        with refusing(ValueError):  # GalleryIndex.load's answer to a damaged index
            return GalleryIndex.load(folder, model=model, processor=processor, images=gallery.images)
    index = GalleryIndex.build(model, processor, gallery.images, ids=list(range(len(gallery.images))), show_progress=True)
    index.save(folder)
    return index


def prebuilt_index(model, processor, gallery: Gallery, folder: str | os.PathLike) -> GalleryIndex:
    """The index `tireid index build` wrote in `folder` for this model and gallery (TIReIDInputError naming
    the folder when it was built by another model or over other images)."""
    with refusing(ValueError):  # GalleryIndex.load's answer to a damaged index or another model's
        index = GalleryIndex.load(folder, model=model, processor=processor)
    if index.ids != gallery.names:
        raise TIReIDInputError(f"--index {folder}: its {len(index)} image ids are not the {len(gallery.names)} images of the "
                         f"gallery {gallery.source} (first: {index.ids[:2]} vs {gallery.names[:2]}); build it from this gallery")
    index.images = gallery.images
    return index


class Demo:
    """The callbacks of the page: each returns a visible message instead of raising."""

    def __init__(self, model, processor, gallery: Gallery, index: GalleryIndex, encoder=None):
        self.model, self.processor, self.gallery, self.index = model, processor, gallery, index
        self.encoder = model if encoder is None else encoder  # what embeds the queries (the ONNX encoders with --onnx)
        self.max_tokens = processor.tokenizer.model_max_length
        self.can_rerank = model.can_rerank
        self.can_restore = model.can_restore_images
        # the same-person score threshold training picked on validation (None: every top-k result is shown)
        self.threshold = getattr(model.config, "score_threshold", None)
        self.threshold_fpr = getattr(model.config, "score_threshold_fpr", None)
        self.max_k = min(MAX_K, len(gallery.images))
        self._results_dir = tempfile.TemporaryDirectory(prefix="tireid-demo-results-")  # removed with the Demo

    def result_file(self, position: int, relevant: bool | None) -> str:
        """Gallery image `position` drawn as a ranked result (framed by `relevant`), as a JPEG file written
        once. Files, not PIL images: Gradio re-encodes a PIL image on every answer and rewrites its cached
        file in place, so a user fetching it while another's answer rewrites it gets a truncated file; a
        file is copied into Gradio's cache once, under a temporary name."""
        path = Path(self._results_dir.name) / f"{position}-{RESULT_KINDS[relevant]}.jpg"
        if not path.exists():
            image = ranked_result(self.gallery.images[position], relevant)
            atomic_file(path, lambda temporary: image.save(temporary, format="JPEG", quality=90))
        return str(path)

    def check_query(self, query: str) -> str:
        """The query stripped; ValueError with the message to show when it cannot be searched."""
        query = (query or "").strip()
        if not query:
            raise ValueError("Type a description of the person to search for (the query is empty).")
        tokens = len(self.processor.tokenizer(query, verbose=False)["input_ids"])
        if tokens > self.max_tokens:
            raise ValueError(f"The query is {tokens} tokens long; the model reads at most {self.max_tokens} "
                             "(CLIP's limit): shorten it.")
        return query

    def search(self, query: str, k, rerank: bool = False):
        """Top-k results as (image, caption) pairs and a Markdown status (one query of :meth:`search_batch`)."""
        (items,), (status,) = self.search_batch([query], [k], [rerank])
        return items, status

    def search_batch(self, queries: list[str], ks: list, reranks: list[bool]):
        """Gradio's batched form of :meth:`search`: the valid queries go through the text encoder together.

        Returns ``(list of result lists, list of statuses)``, one of each per query."""
        checked = []
        for query, k in zip(queries, ks):
            try:
                query = self.check_query(query)
                if not isinstance(k, (int, float)) or int(k) != k or not 1 <= k <= self.max_k:
                    raise ValueError(f"k must be a whole number from 1 to {self.max_k}, got {k}.")
                checked.append((query, int(k), None))
            except ValueError as error:
                checked.append((None, None, f"**Error:** {error}"))
        valid = [query for query, _, error in checked if error is None]
        embeds = embed_texts(self.encoder, self.processor, valid, show_progress=False) if valid else None
        all_items, statuses, row = [], [], 0
        for (query, k, error), rerank in zip(checked, reranks):
            if error is not None:
                all_items.append([])
                statuses.append(error)
                continue
            items, status = self.answer(query, embeds[row:row + 1], k, bool(rerank) and self.can_rerank)
            all_items.append(items)
            statuses.append(status)
            row += 1
        return all_items, statuses

    def answer(self, query: str, embed, k: int, rerank: bool):
        """Results and status of one checked query whose text embedding [1, D] is `embed`. With the model's
        score threshold, the results scoring below it are left out ("no match above the threshold" when
        none is left)."""
        if rerank:
            rerank_k = max(k, self.model.rerank_k)
            results = self.index.search([query], k=k, rerank=True, rerank_k=rerank_k, min_score=self.threshold)
        else:
            results = self.index.search_embeddings(embed, k=k, min_score=self.threshold)
        hits = results.hits(0)
        shown = [position for position, _, _ in hits]
        pid = self.gallery.caption_pids.get(query) if self.gallery.pids is not None else None
        items = []
        for rank, (position, score, _) in enumerate(hits, start=1):
            relevant = None if pid is None else self.gallery.pids[position] == pid
            mark = "" if relevant is None else (" ✓" if relevant else " ✗")
            items.append((self.result_file(position, relevant), f"#{rank} · {score:.3f}{mark}"))
        threshold = "" if self.threshold is None else f"the threshold (score {self.threshold:.3f} at FPR {self.threshold_fpr:g})"
        if threshold and not items:
            status = f"No match above {threshold} among the {len(self.gallery.images)} gallery images."
        else:
            status = (f"Top {len(items)} of {len(self.gallery.images)} gallery images" + (", re-ranked" if rerank else "")
                      + (f", those above {threshold}" if threshold else "") + ".")
        if pid is not None:
            status += " " + self.query_metrics(embed, pid, shown)
        else:
            status += " Free text: no identity known, so no matches are marked."
        return items, status

    def query_metrics(self, embed, pid: int, shown: list[int]) -> str:
        """R@1 and AP of the query (text embedding [1, D]) over the whole gallery, in the order shown
        (re-ranked top-k first)."""
        full = self.index.search_embeddings(embed, k=len(self.gallery.images))
        row = torch.empty(len(self.gallery.images))
        row[full.indices[0]] = full.scores[0]
        row[shown] = row.max() + 1 + torch.arange(len(shown), 0, -1, dtype=row.dtype)
        metrics = rank_metrics(row[None], [pid], self.gallery.pids, ks=(1,))
        return f"Identity {pid}: R@1 = {metrics['R1']:.0f}%, AP = {metrics['mAP']:.1f}% (green: true match, red: other person)."

    def restore(self, upload, position, caption: str):
        """UIT's restoration of an uploaded image (or gallery image `position`) guided by `caption`."""
        try:
            caption = self.check_query(caption)
            if upload is not None:
                path = upload if isinstance(upload, str) else upload.name
                try:
                    image = read_image(path)
                except ImageFileError as error:
                    raise ValueError(f"The uploaded file {Path(path).name} is not an image the demo can use "
                                     f"({error.reason}).") from None
            else:
                if position is None or int(position) != position or not 0 <= position < len(self.gallery.images):
                    raise ValueError(f"Gallery image must be a number from 0 to {len(self.gallery.images) - 1}.")
                image = self.gallery.images[int(position)]
        except ValueError as error:
            return None, f"**Error:** {error}"
        return restoration_figure(self.model, self.processor, image, caption), "Restored."


def build_demo(model, processor, gallery: Gallery, cache_dir: str | os.PathLike = DEFAULT_CACHE,
               index_dir: str | os.PathLike | None = None, onnx_dir: str | os.PathLike | None = None,
               search_batch: int = SEARCH_BATCH, search_workers: int = SEARCH_WORKERS) -> gr.Blocks:
    """The Gradio app over `model` and `gallery`, queued: its embeddings read from `index_dir` (written by
    `tireid index build`) or embedded once and cached in `cache_dir`; queries embedded by the ONNX
    encoders in `onnx_dir` (written by `tireid export onnx` from this model) when given, else by `model`
    (which still re-ranks and restores); searches batched by up to `search_batch` queries,
    `search_workers` batches at a time."""
    index = prebuilt_index(model, processor, gallery, index_dir) if index_dir else cached_index(model, processor, gallery, cache_dir)
    encoder = None
    if onnx_dir:
        from tireid_hf.onnx_export import OnnxEncoders

        with refusing(ValueError):  # OnnxEncoders' answer to a folder of another model or a damaged one
            encoder = OnnxEncoders(onnx_dir, expected_fingerprint=model_fingerprint(model), threads=torch.get_num_threads())
    return make_app(Demo(model, processor, gallery, index, encoder), search_batch, search_workers)


def make_app(demo_state: Demo, search_batch: int = SEARCH_BATCH, search_workers: int = SEARCH_WORKERS) -> gr.Blocks:
    """The queued Gradio page over `demo_state` (see :func:`build_demo`)."""
    model, gallery = demo_state.model, demo_state.gallery
    name = getattr(model, "name_or_path", "") or type(model).__name__
    with gr.Blocks(title="tireid-hf: text-to-image person search") as demo:
        gr.Markdown(f"# Text-to-image person search\nModel `{name}` ({model.config.model_type}); gallery of "
                    f"{len(gallery.images)} images from `{gallery.source}`. Research demo: do not use it to "
                    "identify or track real people.")
        with gr.Row():
            query = gr.Textbox(label="Query", placeholder="a woman in a red coat with a black backpack", scale=4,
                               elem_id="query")
            k = gr.Slider(1, demo_state.max_k, value=min(10, demo_state.max_k), step=1, label="k", elem_id="k")
        rerank = gr.Checkbox(label="Re-rank the top-k with the model's matching score", value=False,
                             visible=demo_state.can_rerank, elem_id="rerank")
        button = gr.Button("Search", variant="primary", elem_id="search")
        if gallery.examples:
            gr.Examples([[example] for example in gallery.examples], inputs=[query],
                        label="Captions of the gallery (their person is known: matches are marked)")
        status = gr.Markdown(elem_id="status")
        results = gr.Gallery(label="Results", columns=10, height="auto", object_fit="contain", elem_id="results")
        queue = dict(batch=True, max_batch_size=search_batch, concurrency_limit=search_workers,
                     concurrency_id="search")
        button.click(demo_state.search_batch, [query, k, rerank], [results, status], api_name="search", **queue)
        query.submit(demo_state.search_batch, [query, k, rerank], [results, status], api_name=False, **queue)
        if demo_state.can_restore:
            with gr.Accordion("Text-guided restoration (UIT)", open=False):
                with gr.Row():
                    upload = gr.File(label="Image (or leave empty to use a gallery image)", elem_id="restore-upload")
                    position = gr.Number(value=0, precision=0, label="Gallery image number", elem_id="restore-position")
                    caption = gr.Textbox(label="Caption guiding the restoration", elem_id="restore-caption")
                restore_button = gr.Button("Restore", elem_id="restore")
                restore_status = gr.Markdown(elem_id="restore-status")
                figure = gr.Image(label="input / grey + masked / restored", type="pil", elem_id="restore-figure")
                restore_button.click(demo_state.restore, [upload, position, caption], [figure, restore_status],
                                     api_name="restore")
    return demo.queue()


def space_settings() -> dict:
    """`space_settings.json` beside this file (written by `tireid push-space`): the Space's model,
    gallery, index and ONNX encoders, paths relative to this folder resolved; {} when absent."""
    path = SETTINGS_FILE
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TIReIDInputError(f"{path}: not a JSON object of settings ({error}); write it again with "
                               "`tireid push-space`") from None
    if not isinstance(settings, dict) or not all(isinstance(settings.get(key), (str, type(None)))
                                                 for key in ("model", "gallery", "index", "onnx")):
        raise TIReIDInputError(f"{path}: must be a JSON object whose model, gallery, index and onnx are "
                               "strings; write it again with `tireid push-space`")
    for key in ("model", "gallery", "index", "onnx"):
        if settings.get(key) and (path.parent / settings[key]).exists():
            settings[key] = str(path.parent / settings[key])
    return settings


def parse_args(argv=None) -> argparse.Namespace:
    settings = space_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("TIREID_MODEL", settings.get("model")),
                        help="model folder or Hub id (TIREID_MODEL, else space_settings.json)")
    parser.add_argument("--gallery", default=os.environ.get("TIREID_GALLERY", settings.get("gallery")),
                        help="folder of images, prepared dataset folder, or 'synthetic' (TIREID_GALLERY; default synthetic)")
    parser.add_argument("--cache-dir", default=os.environ.get("TIREID_CACHE", str(DEFAULT_CACHE)),
                        help="where gallery embeddings are cached (TIREID_CACHE)")
    parser.add_argument("--index", default=os.environ.get("TIREID_INDEX", settings.get("index")),
                        help="gallery index written by `tireid index build` for this model and gallery (TIREID_INDEX)")
    parser.add_argument("--onnx", default=os.environ.get("TIREID_ONNX", settings.get("onnx")),
                        help="folder written by `tireid export onnx` from this model: queries run on onnxruntime (TIREID_ONNX)")
    parser.add_argument("--threads", type=NumberRange(integer=True, low=1), default=os.environ.get("TIREID_THREADS", "1"),
                        help="torch threads (TIREID_THREADS; default 1: threads that compete for busy cores slow the "
                        "text encoder down, benchmarks/bench_space.py)")
    # a Space sets GRADIO_SERVER_NAME=0.0.0.0 and GRADIO_SERVER_PORT: --host and --port default to them, since
    # launch() is given both explicitly and that overrides the variables
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=NumberRange(integer=True, low=1, high=65535),
                        default=os.environ.get("GRADIO_SERVER_PORT", "7860"))
    args = parser.parse_args(argv)
    if not args.model:
        parser.error("give the model with --model DIR_OR_HUB_ID, the TIREID_MODEL environment variable or space_settings.json")
    return args


def main(argv=None) -> None:
    """Serves the demo. A bad model, gallery, index, ONNX folder or settings file (any
    :class:`~tireid_hf.errors.TIReIDError`) or an ``OSError`` (an unreadable or read-only path, a port in use) ends it with
    one line ``app.py: ...`` and exit status 2 (:func:`~tireid_hf.errors.refused_as_one_line`); any other
    exception keeps its traceback."""
    with refused_as_one_line("app.py"):
        args = parse_args(argv)
        torch.set_num_threads(args.threads)
        model, processor = load_model(args.model)
        demo = build_demo(model, processor, load_gallery(args.gallery), cache_dir=args.cache_dir, index_dir=args.index,
                          onnx_dir=args.onnx)
        print(f"tireid-demo: serving {args.model} on http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
        demo.launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
