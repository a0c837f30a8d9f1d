"""``tireid index build`` (a split's gallery embedded once) and ``tireid search`` (a photo folder by text)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import TIReIDInputError
from ..files import atomic_file
from ..loading import load_model_and_processor
from ..ranges import NON_NEGATIVE_INTEGER, POSITIVE_INTEGER
from .arguments import add_batch_size, add_dataset_split, add_device, add_model, add_overwrite, min_score_argument
from .evaluation import model_and_split, resolve_device
from .shell import add_command, add_command_group, refusing


def run_index_build(args: argparse.Namespace) -> int:
    """`tireid index build`: embed a split's gallery once and save the GalleryIndex (ids: image paths)."""
    from ..files import atomic_directory, refuse_overlap
    from ..retrieval import GalleryIndex

    refuse_overlap(args.out, "--out", {"--model": args.model, "--dataset": args.dataset, "--root": args.root})
    model, processor, split = model_and_split(args)
    with refusing(FileExistsError, ValueError), atomic_directory(args.out, overwrite=args.overwrite) as folder:
        index = GalleryIndex.build(model.eval(), processor, split["image"], ids=list(split["image_path"]),
                                   batch_size=args.batch_size, backend=args.backend, precision=args.precision,
                                   rescore=args.rescore)
        index.save(folder)
    settings = ", ".join(f"{key}={value}" for key, value in index.search_backend.settings().items())
    print(f"wrote {args.out}: {len(index)} gallery images of {args.dataset} {args.split}, backend {args.backend} "
          f"({settings}), rescore {args.rescore}")
    return 0


def add_index_parser(subparsers) -> None:
    commands = add_command_group(subparsers, "index", "index_command", "INDEX_COMMAND",
                                 help="gallery indexes: embed a gallery once, search it later (the Space loads them)")
    build = add_command(commands, "build", run_index_build,
                        help="embed every image of a split and save the GalleryIndex to --out",
                        description="Embed every image of a dataset split with a saved model and write a "
                        "GalleryIndex folder (GalleryIndex.load, or the Space's --index, reads it).")
    add_model(build)
    add_dataset_split(build, "the gallery")
    build.add_argument("--out", required=True, help="index folder to write")
    add_overwrite(build)
    build.add_argument("--backend", choices=("exact", "faiss"), default="exact")
    build.add_argument("--precision", choices=("float32", "float16", "int8"), default="float32",
                       help="exact backend: precision of the scored copy (default: float32)")
    build.add_argument("--rescore", type=NON_NEGATIVE_INTEGER, default=0,
                       help="re-score this many candidates with exact float32 scores (default: 0, none)")
    add_batch_size(build)
    add_device(build)


def run_search(args: argparse.Namespace) -> int:
    """`tireid search`: a photo folder searched by text; its index kept beside it and updated."""
    import warnings

    from ..retrieval.folder_search import read_queries, search_folder, search_report, update_folder_index

    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in (".json", ".png"):
        raise TIReIDInputError(f"--out {out}: expected a .json or .png file name")
    with refusing(ValueError):
        queries = read_queries(args.text, args.queries)
    model, processor = load_model_and_processor(args.model)
    model = model.to(resolve_device(args.device)).eval()
    threshold = getattr(model.config, "score_threshold", None)
    min_score = {"auto": "model" if threshold is not None else None, "none": None}.get(args.min_score, args.min_score)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with refusing(OSError, ValueError):
            folder = update_folder_index(model, processor, args.images, args.index, batch_size=args.batch_size)
    for warning in caught:
        print(f"{args.command_name}: warning: {warning.message}", file=sys.stderr)
    with refusing(ValueError):
        ranked = search_folder(folder, queries, k=args.k, min_score=min_score)
        cut = None if folder.index is None else folder.index.score_threshold(min_score)
    print(f"{args.images}: {0 if folder.index is None else len(folder.index)} images ({len(folder.embedded)} embedded "
          f"now, {folder.reused} reused, {len(folder.removed)} removed, {len(folder.skipped)} unreadable skipped); "
          f"index {folder.location}" + ("" if cut is None else f"; minimum score {cut:.4f}"))
    for text, hits in zip(queries, ranked):
        print(f"{text}")
        for rank, (path, score) in enumerate(hits, start=1):
            print(f"  {rank:>3}. {score:.4f}  {folder.folder / path}")
        if not hits:
            print("  no match" + ("" if cut is None else f" (no image scores >= {cut:.4f})"))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".json":
            report = search_report(folder, queries, ranked, model=args.model, k=args.k, min_score=cut)
            atomic_file(out, lambda path: Path(path).write_text(json.dumps(report, indent=2), encoding="utf-8"))
        else:
            figure = ranked_photos_figure(folder.folder, queries, ranked,
                                          f"{args.model} on {args.images}: top {args.k}"
                                          + ("" if cut is None else f", score >= {cut:.4f}"))
            atomic_file(out, lambda path: figure.save(path, format="PNG"))
        print(f"wrote {out}")
    return 0


def ranked_photos_figure(folder: Path, queries: list[str], ranked: list, title: str):
    """One row per query: its ranked photos (paths relative to ``folder``) with their scores, unframed."""
    from ..images import read_image
    from ..visualize import RankedQuery, ranked_results_figure

    rows = []
    for text, hits in zip(queries, ranked):
        images = [read_image(folder / path) for path, _ in hits]
        rows.append(RankedQuery(text, None, images, [None] * len(hits), [score for _, score in hits]))
    return ranked_results_figure(rows, title=title)


def add_search_parser(subparsers) -> None:
    parser = add_command(
        subparsers, "search", run_search,
        help="search a folder of photos by text (its embeddings kept beside it, updated on each call)",
        description="Rank the photos of a folder (recursively: .jpg, .jpeg, .png, .webp; no annotation) for each "
        "query with a saved model. The folder's embeddings are kept in a GalleryIndex (DIR/.tireid-index, or "
        "--index) and reused while the files are unchanged; new or changed files are embedded on the next call, "
        "deleted ones dropped. Unreadable files are listed and skipped.",
    )
    add_model(parser)
    parser.add_argument("--images", required=True, help="the photo folder")
    parser.add_argument("--text", action="append", default=[], help="a query, repeatable")
    parser.add_argument("--queries", default=None, metavar="FILE", help="a text file of queries, one per line")
    parser.add_argument("--k", type=POSITIVE_INTEGER, default=10, help="results per query (default: 10)")
    parser.add_argument("--min-score", type=min_score_argument, default="auto",
                        metavar="FLOAT|model|none", help="leave out photos scoring below this: a number, 'model' (the "
                        "threshold training picked on validation, in the model's config.json) or 'none' (default: "
                        "the model's threshold when it has one, else none)")
    parser.add_argument("--index", default=None, metavar="DIR", help="the index folder (default: IMAGES/.tireid-index)")
    parser.add_argument("--out", default=None, help="write the ranked lists to X.json, or draw them into X.png")
    add_batch_size(parser)
    add_device(parser)
