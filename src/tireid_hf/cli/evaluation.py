"""``tireid evaluate`` and ``tireid visualize``: a saved model on one split of a dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..data import load_tireid_dataset
from ..errors import TIReIDInputError
from ..files import atomic_file
from ..loading import load_model_and_processor
from ..ranges import NON_NEGATIVE_INTEGER, POSITIVE_INTEGER
from .arguments import add_batch_size, add_dataset_split, add_device, add_model, default_output, file_label
from .shell import add_command, refusing


def resolve_device(device: str | None) -> str:
    """``--device``, else cuda when available, else cpu."""
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def model_and_split(args: argparse.Namespace):
    """The saved ``--model`` (on ``--device``), its processor and the ``--split`` of ``--dataset``."""
    model, processor = load_model_and_processor(args.model)
    model = model.to(resolve_device(args.device))
    with refusing(TypeError, ValueError):
        dataset = load_tireid_dataset(args.dataset, root=args.root, column_mapping=args.column_mapping,
                                      **dict(args.option))
    if args.split not in dataset:
        raise TIReIDInputError(f"dataset {args.dataset!r} has no split {args.split!r} (it has {sorted(dataset)})")
    return model, processor, dataset[args.split]


def add_model_and_split(parser: argparse.ArgumentParser, what: str) -> None:
    """The arguments of a command that runs a saved model over a split (re-ranking included)."""
    add_model(parser)
    add_dataset_split(parser, what)
    add_batch_size(parser)
    parser.add_argument("--rerank", action="store_true", help="re-rank each query's top-k with the model's second stage")
    parser.add_argument("--rerank-k", type=POSITIVE_INTEGER, default=10, help="candidates re-ranked per query (default: 10)")
    add_device(parser)


def run_evaluate(args: argparse.Namespace) -> int:
    """`tireid evaluate`: rank metrics of a saved model on one split, written as JSON."""
    from ..retrieval import evaluate_split

    model, processor, split = model_and_split(args)
    metrics = evaluate_split(model, processor, split, batch_size=args.batch_size, rerank=args.rerank,
                             rerank_k=args.rerank_k, directions=args.directions)
    report = {
        "model": args.model,
        "dataset": args.dataset,
        "split": args.split,
        "rerank": args.rerank,
        "rerank_k": args.rerank_k if args.rerank else None,
        "metrics": metrics,
    }
    output = Path(args.output) if args.output else default_output(
        args.model, f"eval_results_{file_label(args.dataset)}_{args.split}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_file(output, lambda path: Path(path).write_text(json.dumps(report, indent=2)))
    print(json.dumps(metrics, indent=2))
    print(f"wrote {output}")
    return 0


def add_evaluate_parser(subparsers) -> None:
    parser = add_command(
        subparsers, "evaluate", run_evaluate,
        help="rank metrics (R1/R5/R10, mAP, mINP) of a saved model on a dataset split",
        description="Embed a split (queries: every caption, gallery: every image), compute the rank "
        "metrics and write them as JSON.",
    )
    add_model_and_split(parser, "the queries and the gallery")
    parser.add_argument("--output", default=None, help="JSON file (default: MODEL/eval_results_DATASET_SPLIT.json)")
    parser.add_argument("--directions", nargs="+", choices=("t2i", "i2t"), default=["t2i"])


def run_visualize(args: argparse.Namespace) -> int:
    """`tireid visualize`: a ranked-results figure of a saved model on one split, written as PNG."""
    from ..retrieval import split_queries
    from ..visualize import choose_queries, rank_split_queries, ranked_results_figure

    model, processor, split = model_and_split(args)
    indices = list(args.query_index)
    with refusing(ValueError):
        if not indices and not args.text:
            indices = choose_queries(split_queries(split)[1], args.num_queries, seed=args.seed)
        queries = rank_split_queries(model, processor, split, query_indices=indices, texts=args.text, k=args.k,
                                     rerank=args.rerank, rerank_k=max(args.rerank_k, args.k), batch_size=args.batch_size)
    title = f"{args.model} on {args.dataset} {args.split}: top {args.k}" + (" (re-ranked)" if args.rerank else "")
    figure = ranked_results_figure(queries, title=title)
    output = Path(args.output) if args.output else default_output(
        args.model, f"ranked_results_{file_label(args.dataset)}_{args.split}.png")
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_file(output, lambda path: figure.save(path, format="PNG"))
    known = [query for query in queries if query.pid is not None]
    hits = sum(query.first_match == 1 for query in known)
    print(f"wrote {output} ({figure.width}x{figure.height}): {len(queries)} quer{'y' if len(queries) == 1 else 'ies'}, top {args.k}"
          + (f"; a true match at rank 1 for {hits} of {len(known)} queries of known identity" if known else ""))
    return 0


def add_visualize_parser(subparsers) -> None:
    parser = add_command(
        subparsers, "visualize", run_visualize,
        help="ranked-results figure: queries and their top-k gallery images framed green (match) / red",
        description="Search a split's gallery (every image) with some of its captions (their identity is known, "
        "so each result is framed green if it shows that person, red if not) and/or free texts (unframed), "
        "and draw one row per query.",
    )
    add_model_and_split(parser, "the queries and the gallery")
    parser.add_argument("--output", default=None, help="PNG file (default: MODEL/ranked_results_DATASET_SPLIT.png)")
    parser.add_argument("--k", type=POSITIVE_INTEGER, default=10, help="results shown per query (default: 10)")
    parser.add_argument("--num-queries", type=POSITIVE_INTEGER, default=4,
                        help="captions of this many distinct identities, drawn with --seed (default: 4), "
                        "unless --query-index or --text is given")
    parser.add_argument("--seed", type=NON_NEGATIVE_INTEGER, default=0, help="seed of the drawn queries (default: 0)")
    parser.add_argument("--query-index", type=NON_NEGATIVE_INTEGER, action="append", default=[], metavar="I",
                        help="caption I of the split (row order, captions of a row in order), repeatable")
    parser.add_argument("--text", action="append", default=[], help="a free-text query, repeatable")
