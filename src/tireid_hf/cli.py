"""The `tireid` console script: one subcommand per job (`tireid --help` lists them)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import yaml

from . import __version__
from .data import DATASET_NAMES, DatasetFormatError, load_tireid_dataset, parse_column_mapping
from .files import atomic_file


def load_model_and_processor(model: str, prefix: str = "tireid"):
    """The model and processor saved in the folder (or Hub repo) ``model``; a missing folder, a folder
    without ``config.json`` or a processor that does not load ends the program with one sentence
    starting with ``prefix`` (the command's name)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id
    from transformers import AutoModel, AutoProcessor

    import tireid_hf  # noqa: F401  (registers the tireid model classes with the Auto classes)

    path = Path(model)
    if path.exists() and not path.is_dir():
        raise SystemExit(f"{prefix}: --model {model} is a file; expected a model folder or a Hub repo id")
    if path.is_dir() and not (path / "config.json").is_file():
        raise SystemExit(f"{prefix}: --model {model}: no config.json (expected a folder written by train.py "
                         "or tireid push)")
    if not path.is_dir():
        try:
            validate_repo_id(model)
        except HFValidationError:
            raise SystemExit(f"{prefix}: --model {model}: no such folder (nor a Hub repo id)") from None
    try:
        return AutoModel.from_pretrained(model), AutoProcessor.from_pretrained(model)
    except (OSError, ValueError) as error:  # transformers' "not found" and "unrecognized" errors
        where = "" if path.is_dir() else "no such folder, and as a Hub repo id: "
        raise SystemExit(f"{prefix}: --model {model}: {where}{str(error).splitlines()[0]}") from None


def _model_and_split(args: argparse.Namespace, command: str):
    """The saved model (on ``--device``), its processor and the ``--split`` of ``--dataset``."""
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, processor = load_model_and_processor(args.model, f"tireid {command}")
    model = model.to(device)
    try:
        dataset = load_tireid_dataset(args.dataset, root=args.root, column_mapping=args.column_mapping,
                                      **_parse_options(args.option))
    except (DatasetFormatError, TypeError, ValueError) as error:
        raise SystemExit(f"tireid {command}: {error}") from None
    if args.split not in dataset:
        raise SystemExit(f"tireid {command}: dataset {args.dataset!r} has no split {args.split!r} (it has {sorted(dataset)})")
    return model, processor, dataset[args.split]


def _add_model_and_split_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="directory (or Hub id) of a saved tireid model and processor")
    _add_dataset_argument(parser, "the split")
    parser.add_argument("--root", "--data_root", "--data-root", dest="root", default=None, help="dataset root directory")
    parser.add_argument("--split", default="test", help="split to use (default: test)")
    parser.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=64)
    parser.add_argument("--rerank", action="store_true", help="re-rank each query's top-k with the model's second stage")
    parser.add_argument("--rerank-k", "--rerank_k", dest="rerank_k", type=int, default=10)
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    _add_options(parser)


def _add_dataset_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """``--dataset`` (a name, a dataset folder or a Hub dataset id) and ``--column-mapping``."""
    parser.add_argument("--dataset", required=True,
                        help=f"where {what} is read from: {', '.join(DATASET_NAMES)} (with --root), a folder (tireid "
                        "data prepare / save_to_disk / Parquet / photos with metadata.jsonl or metadata.csv) or a "
                        "Hub dataset id")
    parser.add_argument("--column-mapping", "--column_mapping", dest="column_mapping", type=_column_mapping_argument,
                        default=None, metavar="ZOO=YOURS,...",
                        help="a folder's or Hub dataset's column names, e.g. caption=description,pid=person_id")


def _file_label(dataset: str) -> str:
    """``--dataset`` as part of a file name: a folder's name, a Hub id's ``/`` as ``--``."""
    return Path(dataset).name if Path(dataset).is_dir() else dataset.replace("/", "--")


def _column_mapping_argument(value: str) -> dict:
    try:
        return parse_column_mapping(value, "--column-mapping")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _default_output(model: str, name: str) -> Path:
    """``name`` inside the model's folder, or in the current folder for a Hub id."""
    return (Path(model) if Path(model).is_dir() else Path(".")) / name


def run_evaluate(args: argparse.Namespace) -> int:
    """`tireid evaluate`: rank metrics of a saved model on one split, written as JSON."""
    from tireid_hf.retrieval import evaluate_split

    model, processor, split = _model_and_split(args, "evaluate")
    metrics = evaluate_split(
        model,
        processor,
        split,
        batch_size=args.batch_size,
        rerank=args.rerank,
        rerank_k=args.rerank_k,
        directions=args.directions,
    )
    report = {
        "model": args.model,
        "dataset": args.dataset,
        "split": args.split,
        "rerank": args.rerank,
        "rerank_k": args.rerank_k if args.rerank else None,
        "metrics": metrics,
    }
    output = Path(args.output) if args.output else _default_output(args.model, f"eval_results_{_file_label(args.dataset)}_{args.split}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_file(output, lambda path: Path(path).write_text(json.dumps(report, indent=2)))
    print(json.dumps(metrics, indent=2))
    print(f"wrote {output}")
    return 0


def add_evaluate_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="rank metrics (R1/R5/R10, mAP, mINP) of a saved model on a dataset split",
        description="Embed a split (queries: every caption, gallery: every image), compute the rank "
        "metrics and write them as JSON.",
    )
    _add_model_and_split_arguments(parser)
    parser.add_argument("--output", default=None, help="JSON file (default: MODEL/eval_results_DATASET_SPLIT.json)")
    parser.add_argument("--directions", nargs="+", choices=("t2i", "i2t"), default=["t2i"])
    parser.set_defaults(run=run_evaluate)


def run_visualize(args: argparse.Namespace) -> int:
    """`tireid visualize`: a ranked-results figure of a saved model on one split, written as PNG."""
    from tireid_hf.retrieval import split_queries
    from tireid_hf.visualize import choose_queries, rank_split_queries, ranked_results_figure

    model, processor, split = _model_and_split(args, "visualize")
    indices = list(args.query_index)
    try:
        if not indices and not args.text:
            indices = choose_queries(split_queries(split)[1], args.num_queries, seed=args.seed)
        queries = rank_split_queries(model, processor, split, query_indices=indices, texts=args.text, k=args.k,
                                     rerank=args.rerank, rerank_k=max(args.rerank_k, args.k), batch_size=args.batch_size)
    except ValueError as error:
        raise SystemExit(f"tireid visualize: {error}") from None
    title = f"{args.model} on {args.dataset} {args.split}: top {args.k}" + (" (re-ranked)" if args.rerank else "")
    figure = ranked_results_figure(queries, title=title)
    output = Path(args.output) if args.output else _default_output(args.model, f"ranked_results_{_file_label(args.dataset)}_{args.split}.png")
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_file(output, lambda path: figure.save(path, format="PNG"))
    known = [query for query in queries if query.pid is not None]
    hits = sum(query.first_match == 1 for query in known)
    print(f"wrote {output} ({figure.width}x{figure.height}): {len(queries)} quer{'y' if len(queries) == 1 else 'ies'}, top {args.k}"
          + (f"; a true match at rank 1 for {hits} of {len(known)} queries of known identity" if known else ""))
    return 0


def add_visualize_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "visualize",
        help="ranked-results figure: queries and their top-k gallery images framed green (match) / red",
        description="Search a split's gallery (every image) with some of its captions (their identity is known, "
        "so each result is framed green if it shows that person, red if not) and/or free texts (unframed), "
        "and draw one row per query.",
    )
    _add_model_and_split_arguments(parser)
    parser.add_argument("--output", default=None, help="PNG file (default: MODEL/ranked_results_DATASET_SPLIT.png)")
    parser.add_argument("--k", type=int, default=10, help="results shown per query (default: 10)")
    parser.add_argument("--num-queries", "--num_queries", dest="num_queries", type=int, default=4,
                        help="captions of this many distinct identities, drawn with --seed (default: 4), "
                        "unless --query-index or --text is given")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--query-index", "--query_index", dest="query_index", type=int, action="append", default=[],
                        metavar="I", help="caption I of the split (row order, captions of a row in order), repeatable")
    parser.add_argument("--text", action="append", default=[], help="a free-text query, repeatable")
    parser.set_defaults(run=run_visualize)


def run_index_build(args: argparse.Namespace) -> int:
    """`tireid index build`: embed a split's gallery once and save the GalleryIndex (ids: image paths)."""
    from tireid_hf.files import atomic_directory
    from tireid_hf.retrieval import GalleryIndex

    model, processor, split = _model_and_split(args, "index build")
    try:
        with atomic_directory(args.out, overwrite=args.overwrite) as folder:
            index = GalleryIndex.build(model.eval(), processor, split["image"], ids=list(split["image_path"]),
                                       batch_size=args.batch_size, backend=args.backend, precision=args.precision,
                                       rescore=args.rescore)
            index.save(folder)
    except (FileExistsError, ValueError) as error:
        raise SystemExit(f"tireid index build: {error}") from None
    settings = ", ".join(f"{key}={value}" for key, value in index.search_backend.settings().items())
    print(f"wrote {args.out}: {len(index)} gallery images of {args.dataset} {args.split}, backend {args.backend} "
          f"({settings}), rescore {args.rescore}")
    return 0


def add_index_parser(subparsers) -> None:
    index = subparsers.add_parser("index", help="gallery indexes: embed a gallery once, search it later (the Space loads them)")
    commands = index.add_subparsers(dest="index_command", metavar="INDEX_COMMAND")
    commands.required = True
    build = commands.add_parser("build", help="embed every image of a split and save the GalleryIndex to --out",
                                description="Embed every image of a dataset split with a saved model and write a "
                                "GalleryIndex folder (GalleryIndex.load, or the Space's --index, reads it).")
    build.add_argument("--model", required=True, help="directory (or Hub id) of a saved tireid model and processor")
    _add_dataset_argument(build, "the gallery")
    build.add_argument("--root", "--data_root", "--data-root", dest="root", default=None, help="dataset root directory")
    build.add_argument("--split", default="test", help="split whose images are the gallery (default: test)")
    build.add_argument("--out", required=True, help="index folder to write")
    build.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    build.add_argument("--backend", choices=("exact", "faiss"), default="exact")
    build.add_argument("--precision", choices=("float32", "float16", "int8"), default="float32",
                       help="exact backend: precision of the scored copy (default: float32)")
    build.add_argument("--rescore", type=int, default=0,
                       help="re-score this many candidates with exact float32 scores (default: 0, none)")
    build.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=64)
    build.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    _add_options(build)
    build.set_defaults(run=run_index_build)


def run_export_onnx(args: argparse.Namespace) -> int:
    """`tireid export onnx`: the image and text encoders of a saved model as ONNX files."""
    try:
        from tireid_hf.onnx_export import export_onnx
    except ImportError as error:
        raise SystemExit(f"tireid export onnx: needs onnx, onnxscript and onnxruntime: pip install 'tireid-hf[onnx]' ({error})") from None

    model, processor = load_model_and_processor(args.model, "tireid export onnx")
    try:
        export_onnx(model, processor, args.out, int8=args.int8, overwrite=args.overwrite)
    except FileExistsError as error:
        raise SystemExit(f"tireid export onnx: {error}") from None
    print(f"wrote {args.out}: image_encoder.onnx, text_encoder.onnx" + (" and their int8 variants" if args.int8 else "")
          + " with the processor and README.md")
    return 0


def _min_score_argument(value: str):
    """``--min-score``: ``auto``, ``model``, ``none`` or a number."""
    if value in ("auto", "model", "none"):
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, 'model', 'none' or 'auto', got {value!r}") from None


def run_search(args: argparse.Namespace) -> int:
    """`tireid search`: a photo folder searched by text; its index kept beside it and updated."""
    import warnings

    import torch

    from .retrieval.folder_search import read_queries, search_folder, search_report, update_folder_index

    if args.k < 1:
        raise SystemExit(f"tireid search: --k must be >= 1, got {args.k}")
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in (".json", ".png"):
        raise SystemExit(f"tireid search: --out {out}: expected a .json or .png file name")
    try:
        queries = read_queries(args.text, args.queries)
    except ValueError as error:
        raise SystemExit(f"tireid search: {error}") from None
    model, processor = load_model_and_processor(args.model, "tireid search")
    model = model.to(args.device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
    threshold = getattr(model.config, "score_threshold", None)
    min_score = {"auto": "model" if threshold is not None else None, "none": None}.get(args.min_score, args.min_score)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            folder = update_folder_index(model, processor, args.images, args.index, batch_size=args.batch_size)
        except (OSError, ValueError) as error:
            raise SystemExit(f"tireid search: {error}") from None
    for warning in caught:
        print(f"tireid search: warning: {warning.message}", file=sys.stderr)
    try:
        ranked = search_folder(folder, queries, k=args.k, min_score=min_score)
        cut = None if folder.index is None else folder.index.score_threshold(min_score)
    except ValueError as error:
        raise SystemExit(f"tireid search: {error}") from None
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
            from PIL import Image

            from .visualize import RankedQuery, ranked_results_figure

            rows = []
            for text, hits in zip(queries, ranked):
                images = []
                for path, _ in hits:
                    with Image.open(folder.folder / path) as image:
                        images.append(image.convert("RGB"))
                rows.append(RankedQuery(text, None, images, [None] * len(hits), [score for _, score in hits]))
            title = f"{args.model} on {args.images}: top {args.k}" + ("" if cut is None else f", score >= {cut:.4f}")
            figure = ranked_results_figure(rows, title=title)
            atomic_file(out, lambda path: figure.save(path, format="PNG"))
        print(f"wrote {out}")
    return 0


def add_search_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "search", help="search a folder of photos by text (its embeddings kept beside it, updated on each call)",
        description="Rank the photos of a folder (recursively: .jpg, .jpeg, .png, .webp; no annotation) for each "
        "query with a saved model. The folder's embeddings are kept in a GalleryIndex (DIR/.tireid-index, or "
        "--index) and reused while the files are unchanged; new or changed files are embedded on the next call, "
        "deleted ones dropped. Unreadable files are listed and skipped.",
    )
    parser.add_argument("--model", required=True, help="directory (or Hub id) of a saved tireid model and processor")
    parser.add_argument("--images", required=True, help="the photo folder")
    parser.add_argument("--text", action="append", default=[], help="a query, repeatable")
    parser.add_argument("--queries", default=None, metavar="FILE", help="a text file of queries, one per line")
    parser.add_argument("--k", type=int, default=10, help="results per query (default: 10)")
    parser.add_argument("--min-score", "--min_score", dest="min_score", type=_min_score_argument, default="auto",
                        metavar="FLOAT|model|none", help="leave out photos scoring below this: a number, 'model' (the "
                        "threshold training picked on validation, in the model's config.json) or 'none' (default: "
                        "the model's threshold when it has one, else none)")
    parser.add_argument("--index", default=None, metavar="DIR", help="the index folder (default: IMAGES/.tireid-index)")
    parser.add_argument("--out", default=None, help="write the ranked lists to X.json, or draw them into X.png")
    parser.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=64)
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.set_defaults(run=run_search)


def add_export_parser(subparsers) -> None:
    export = subparsers.add_parser("export", help="export a saved model's encoders (ONNX)")
    formats = export.add_subparsers(dest="export_format", metavar="FORMAT")
    formats.required = True
    onnx = formats.add_parser("onnx", help="image and text encoders as ONNX (inference path, dynamic batch)",
                              description="Write image_encoder.onnx and text_encoder.onnx (torch.onnx dynamo exporter), "
                              "the processor and a README stating the pre-processing into --out.")
    onnx.add_argument("--model", required=True, help="directory (or Hub id) of a saved tireid model and processor")
    onnx.add_argument("--out", required=True, help="folder to write")
    onnx.add_argument("--int8", action="store_true", help="also write onnxruntime's dynamically quantised int8 variants")
    onnx.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    onnx.set_defaults(run=run_export_onnx)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tireid", description="Text-to-image person re-identification zoo.")
    parser.add_argument("--version", action="version", version=f"tireid-hf {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    add_data_parser(subparsers)
    add_evaluate_parser(subparsers)
    add_visualize_parser(subparsers)
    add_index_parser(subparsers)
    add_export_parser(subparsers)
    add_search_parser(subparsers)
    add_push_parsers(subparsers)
    add_convert_parser(subparsers)
    add_cards_parser(subparsers)
    add_pretrain_base_parser(subparsers)
    return parser


def add_pretrain_base_parser(subparsers) -> None:
    """Adds `tireid pretrain-base`: the zoo's small pretrained CLIP base (`make base`)."""
    base = subparsers.add_parser(
        "pretrain-base", help="pretrain the small CLIP base the synthetic configs start from (make base)",
        description="Pretrain a small transformers CLIPModel contrastively on the generated alt-text corpus "
        "(tireid_hf.data.synthetic.pretraining) and save it with its CLIPProcessor: the folder the "
        "configs/*_synthetic.yaml name as clip_name_or_path. One CPU thread, bit-identical for the same config.",
    )
    base.add_argument("--out", default="bases/clip-synthetic", help="output folder (default: bases/clip-synthetic)")
    base.add_argument("--overwrite", action="store_true", help="replace the folder (only once the new one is complete)")
    base.set_defaults(run=run_pretrain_base)


def run_pretrain_base(args: argparse.Namespace) -> int:
    from .training.pretrain_base import pretrain_base

    try:
        log = pretrain_base(args.out, overwrite=args.overwrite)
    except (FileExistsError, NotADirectoryError) as error:
        raise SystemExit(f"tireid pretrain-base: {error}") from None
    last = log["epochs"][-1]
    print(f"wrote {args.out}: held-out zero-shot R@1 text->image {last['held_out_t2i_R1']:.1f}, "
          f"image->text {last['held_out_i2t_R1']:.1f}")
    return 0


def add_cards_parser(subparsers) -> None:
    """Adds `tireid cards`: the model card of every checkpoint the zoo publishes, into hub_cards/."""
    cards = subparsers.add_parser(
        "cards", help="render the model card of every checkpoint the zoo publishes (hub_cards/<name>/README.md)",
        description="Render hub_cards/ from the package's card templates and configs/*.yaml "
        "(run from the repository root); the folder is replaced whole. A zoo checkpoint whose run folder is in "
        "--runs (RUNS/<method>-<dataset>/results.json) gets the card of its results.",
    )
    cards.add_argument("--out", default="hub_cards", help="output folder (default: hub_cards)")
    cards.add_argument("--configs", default="configs", help="training configurations (default: configs)")
    cards.add_argument("--org", default=None, help="Hub organisation of the repositories (default: tireid-hf)")
    cards.add_argument("--runs", default=None, help="folder of trained runs, one per <method>-<dataset>")
    cards.set_defaults(run=run_cards)


def run_cards(args: argparse.Namespace) -> int:
    from .hub.catalogue import DEFAULT_ORG, render_catalogue

    try:
        names = render_catalogue(args.out, configs_dir=args.configs,
                                 org=args.org or DEFAULT_ORG, runs_dir=args.runs)
    except FileNotFoundError as error:
        raise SystemExit(f"tireid cards: {error}") from None
    print(f"wrote {len(names)} model cards to {args.out}/")
    return 0


def add_convert_parser(subparsers) -> None:
    """Adds `tireid convert {irra,openai-clip}`: reference checkpoints -> save_pretrained folders."""
    convert = subparsers.add_parser("convert", help="convert a reference checkpoint (IRRA layout, OpenAI CLIP) into a model folder")
    formats = convert.add_subparsers(dest="format", metavar="FORMAT")
    formats.required = True
    irra = formats.add_parser(
        "irra", help="IRRA / RDE / SEN checkpoint (best.pth) -> clip_reid (uit for SEN)",
        description="Convert a checkpoint in IRRA's layout (base_model.* = OpenAI CLIP, rectangular position table) "
        "into a zoo model folder (weights, config, remote code, processor, conversion.json). Heads the zoo has no "
        "counterpart for are dropped and listed.",
    )
    irra.add_argument("checkpoint", help="the checkpoint file (.pth / .pt / .safetensors)")
    irra.add_argument("--variant", choices=("irra", "rde", "sen"), default="irra",
                      help="the reference method that wrote it (default: irra); sen converts into uit")
    irra.add_argument("--image-size", "--image_size", dest="image_size", type=int, nargs=2, default=(384, 128),
                      metavar=("HEIGHT", "WIDTH"), help="img_size it was trained at (default: 384 128)")
    openai = formats.add_parser(
        "openai-clip", help="OpenAI CLIP ViT file (ViT-B-16.pt, ...) -> a transformers CLIPModel folder",
        description="Convert OpenAI's original CLIP ViT file (TorchScript archive or state dict) into a "
        "transformers CLIPModel folder usable as clip_name_or_path (no Hub access needed).",
    )
    openai.add_argument("checkpoint", help="the CLIP file (e.g. ~/.cache/clip/ViT-B-16.pt)")
    for parser in (irra, openai):
        parser.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
        parser.add_argument("--overwrite", action="store_true")
        parser.set_defaults(run=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    from .convert import ConversionError, convert_irra, convert_openai_clip

    try:
        if args.format == "irra":
            report = convert_irra(args.checkpoint, args.out, variant=args.variant, image_size=args.image_size,
                                  overwrite=args.overwrite)
        else:
            report = convert_openai_clip(args.checkpoint, args.out, overwrite=args.overwrite)
    except (ConversionError, FileExistsError) as error:
        raise SystemExit(f"tireid convert {args.format}: {error}") from None
    dropped = "; ".join(f"{group}: {len(names)} tensors" for group, names in report["dropped"].items()) or "nothing"
    target = report.get("method", "CLIPModel")
    print(f"wrote {args.out}: {target} from {report['source']}; dropped {dropped} (listed in {args.out}/conversion.json)")
    if report.get("note"):
        print(f"note: {report['note']}")
    return 0


def add_push_parsers(subparsers) -> None:
    """Adds `tireid push` (a trained model) and `tireid push-metric` (the metric's Space)."""
    push = subparsers.add_parser(
        "push", help="upload a trained model (inference-only weights, remote code, processor, model card)",
        description="Prepare the Hub folder of a model trained by train.py (weights exported for inference, "
        "config.json with auto_map, remote code, processor, results.json, README.md model card) and upload it.",
    )
    push.add_argument("--model", required=True, help="folder written by train.py (with results.json)")
    push.add_argument("--repo", required=True, help="org/name of the model repository")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--license", default=None, help="card license (default: apache-2.0, other for research-only datasets)")
    push.add_argument("--dataset-repo", default=None, help="Hub dataset the model was trained on, for the card's metadata")
    push.add_argument("--token", help="Hub token (default: the logged-in one)")
    push.add_argument("--card", default=None, help="upload this model card (e.g. hub_cards/<name>/README.md) instead of "
                      "rendering one from results.json; needed for a converted checkpoint")
    push.add_argument("--dry-run", metavar="OUT", default=None, help="write the folder to OUT and upload nothing")
    push.add_argument("--overwrite", action="store_true", help="--dry-run: replace OUT if it exists")
    push.set_defaults(run=run_push)

    metric = subparsers.add_parser("push-metric", help="upload the tireid_retrieval metric as an evaluate-style Space")
    metric.add_argument("--repo", default=None, help="org/name of the Space (required unless --dry-run)")
    metric.add_argument("--private", action="store_true", help="create the Space private")
    metric.add_argument("--token", help="Hub token (default: the logged-in one)")
    metric.add_argument("--dry-run", metavar="OUT", default=None, help="write the Space folder to OUT and upload nothing")
    metric.add_argument("--overwrite", action="store_true", help="--dry-run: replace OUT if it exists")
    metric.set_defaults(run=run_push_metric)

    space = subparsers.add_parser(
        "push-space", help="upload the demo Space (app, pinned requirements, Space README) over a model and gallery",
        description="Write the demo Space folder (spaces/tireid-demo/app.py, space_settings.json, requirements.txt "
        "pinned to the installed versions, README.md with the Space metadata; a local model or gallery folder is "
        "copied in) and upload it in one commit.",
    )
    space.add_argument("--repo", default=None, help="org/name of the Space (required unless --dry-run)")
    space.add_argument("--model", default=None, help="model folder (copied into the Space) or Hub id; default: the "
                       "Space's TIREID_MODEL variable")
    space.add_argument("--gallery", default=None, help="folder of images or prepared dataset (copied), or 'synthetic' (default)")
    space.add_argument("--space-dir", default=None, help="the demo's source folder (default: spaces/tireid-demo of this checkout)")
    space.add_argument("--private", action="store_true", help="create the Space private")
    space.add_argument("--token", help="Hub token (default: the logged-in one)")
    space.add_argument("--dry-run", metavar="OUT", default=None, help="write the Space folder to OUT and upload nothing")
    space.set_defaults(run=run_push_space)


def run_push(args: argparse.Namespace) -> int:
    from .hub.model_push import push_model, write_model_folder
    from .hub.upload import HubUploadError, check_repo_id

    try:
        check_repo_id(args.repo, "--repo")
        if args.dry_run:
            print(f"wrote {write_model_folder(args.model, args.dry_run, args.repo, license=args.license, dataset_repo=args.dataset_repo, card=args.card, overwrite=args.overwrite)}")
        else:
            print(push_model(args.model, args.repo, private=args.private, license=args.license,
                             dataset_repo=args.dataset_repo, token=args.token, card=args.card))
    except (HubUploadError, OSError, ValueError) as error:
        raise SystemExit(f"tireid push: {error}") from None
    return 0


def run_push_metric(args: argparse.Namespace) -> int:
    from .hub.metric_space import push_metric_space, write_metric_space
    from .hub.upload import HubUploadError, check_repo_id

    try:
        if args.repo:
            check_repo_id(args.repo, "--repo")
        if args.dry_run:
            print(f"wrote {write_metric_space(args.dry_run, overwrite=args.overwrite)}")
        elif not args.repo:
            raise SystemExit("tireid push-metric: --repo org/name is required unless --dry-run OUT is given")
        else:
            print(push_metric_space(args.repo, private=args.private, token=args.token))
    except (HubUploadError, OSError, ValueError) as error:
        raise SystemExit(f"tireid push-metric: {error}") from None
    return 0


def add_data_parser(subparsers) -> None:
    """Adds `tireid data {prepare,push,export-synthetic}`: Parquet + card, Hub upload, synthetic raw export."""
    data = subparsers.add_parser("data", help="prepare, push or generate datasets")
    commands = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    commands.required = True

    prepare = commands.add_parser("prepare", help="write a dataset as Parquet shards with embedded images and a card")
    prepare.add_argument("--dataset", required=True, choices=DATASET_NAMES)
    prepare.add_argument("--root", help="folder of the original release (annotation file + imgs/); not for synthetic")
    prepare.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
    prepare.add_argument("--skip-bad-images", action="store_true", help="drop records whose image is missing or undecodable")
    prepare.add_argument("--no-verify-images", action="store_true", help="only check that images exist, do not decode-check them")
    prepare.add_argument("--max-rows-per-shard", type=int, default=5000)
    prepare.add_argument("--overwrite", action="store_true")
    _add_options(prepare)
    prepare.set_defaults(run=run_data_prepare)

    push = commands.add_parser("push", help="upload a prepared folder to a Hub dataset repo (private by default)")
    push.add_argument("--data", required=True, help="folder written by `tireid data prepare`")
    push.add_argument("--repo", required=True, help="org/name of the dataset repository")
    push.add_argument("--public", action="store_true", help="create the repo public (never for CUHK-PEDES/ICFG-PEDES/RSTPReid without permission)")
    push.add_argument("--token", help="Hub token (default: the logged-in one)")
    push.add_argument("--dry-run", metavar="OUT", default=None, help="write the folder to OUT and upload nothing")
    push.add_argument("--overwrite", action="store_true", help="--dry-run: replace OUT if it exists")
    push.set_defaults(run=run_data_push)

    export = commands.add_parser("export-synthetic", help="write the synthetic dataset in the CUHK-PEDES raw format")
    export.add_argument("--out", required=True, help="new folder to hold reid_raw.json and imgs/")
    _add_options(export)
    export.set_defaults(run=run_data_export_synthetic)


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="dataset option, repeatable (e.g. num_train_ids=500, seed=1, validation_ids=0.1)")


def _parse_options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--option expects KEY=VALUE, got {pair!r}")
        options[key.strip()] = yaml.safe_load(value)
    return options


def run_push_space(args: argparse.Namespace) -> int:
    from .hub.demo_space import push_space, write_space
    from .hub.upload import HubUploadError

    options = dict(model=args.model, gallery=args.gallery, space_dir=args.space_dir)
    try:
        if args.dry_run:
            print(f"wrote {write_space(args.dry_run, **options)}")
        elif not args.repo:
            raise SystemExit("tireid push-space: --repo org/name is required unless --dry-run OUT is given")
        else:
            print(push_space(args.repo, private=args.private, token=args.token, **options))
    except (HubUploadError, FileNotFoundError, FileExistsError) as error:
        raise SystemExit(f"tireid push-space: {error}") from None
    return 0


def run_data_prepare(args: argparse.Namespace) -> int:
    from .hub.dataset_card import render_dataset_card
    from .data.prepare import prepare_dataset

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if Path(args.out).exists() and not args.overwrite:
        raise SystemExit(f"error: {args.out} already exists (pass --overwrite to replace it)")
    options = _parse_options(args.option)
    if args.dataset != "synthetic":
        options.update(skip_bad_images=args.skip_bad_images, verify_images=not args.no_verify_images)
    try:
        dataset = load_tireid_dataset(args.dataset, args.root, **options)
        card = render_dataset_card(args.dataset, dataset, options=options)
        out = prepare_dataset(dataset, args.out, name=args.dataset, card=str(card),
                              max_rows_per_shard=args.max_rows_per_shard, overwrite=args.overwrite)
    except (DatasetFormatError, OSError, TypeError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    print(f"wrote {out}")
    return 0


def run_data_push(args: argparse.Namespace) -> int:
    from .hub.dataset_push import push_dataset, write_dataset_folder
    from .hub.upload import HubUploadError, check_repo_id

    try:
        check_repo_id(args.repo, "--repo")
        if args.dry_run:
            print(f"wrote {write_dataset_folder(args.data, args.dry_run, overwrite=args.overwrite)}")
        else:
            print(push_dataset(args.data, args.repo, private=not args.public, token=args.token))
    except (HubUploadError, OSError, ValueError) as error:
        raise SystemExit(f"tireid data push: {error}") from None
    return 0


def run_data_export_synthetic(args: argparse.Namespace) -> int:
    from .data.synthetic import export_cuhk_format

    try:
        print(f"wrote {export_cuhk_format(args.out, **_parse_options(args.option))}")
    except (OSError, TypeError, ValueError) as error:
        raise SystemExit(f"tireid data export-synthetic: {error}") from None
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
