"""The `tireid` console script: one subcommand per job (`tireid --help` lists them)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from . import __version__


def run_evaluate(args: argparse.Namespace) -> int:
    """`tireid evaluate`: rank metrics of a saved model on one split, written as JSON."""
    import torch
    from transformers import AutoModel, AutoProcessor

    import tireid_hf  # noqa: F401  (registers the tireid model classes with the Auto classes)
    from tireid_hf.data import load_tireid_dataset
    from tireid_hf.retrieval import evaluate_split

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = AutoModel.from_pretrained(args.model).to(device)
    processor = AutoProcessor.from_pretrained(args.model)
    dataset = load_tireid_dataset(args.dataset, root=args.root)
    if args.split not in dataset:
        raise SystemExit(f"tireid evaluate: dataset {args.dataset!r} has no split {args.split!r} (it has {sorted(dataset)})")
    metrics = evaluate_split(
        model,
        processor,
        dataset[args.split],
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
    output = Path(args.output) if args.output else Path(args.model) / f"eval_results_{args.dataset}_{args.split}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(report, stream, indent=2)
        os.replace(temporary, output)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
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
    parser.add_argument("--model", required=True, help="directory of a saved tireid model and processor")
    parser.add_argument("--dataset", required=True, help="dataset name: cuhk-pedes, icfg-pedes, rstpreid, synthetic")
    parser.add_argument("--root", "--data_root", "--data-root", dest="root", default=None, help="dataset root directory")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--output", default=None, help="JSON file (default: MODEL/eval_results_DATASET_SPLIT.json)")
    parser.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=64)
    parser.add_argument("--directions", nargs="+", choices=("t2i", "i2t"), default=["t2i"])
    parser.add_argument("--rerank", action="store_true", help="re-rank each query's top-k with the model's second stage")
    parser.add_argument("--rerank-k", "--rerank_k", dest="rerank_k", type=int, default=10)
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.set_defaults(run=run_evaluate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tireid", description="Text-to-image person re-identification zoo.")
    parser.add_argument("--version", action="version", version=f"tireid-hf {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    add_evaluate_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
