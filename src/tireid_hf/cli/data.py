"""``tireid data {prepare,push,export-synthetic}``: Parquet + card, Hub upload, synthetic raw export."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..data import DATASET_NAMES, load_tireid_dataset
from ..errors import TIReIDInputError
from ..files import refuse_overlap
from ..ranges import POSITIVE_INTEGER
from .arguments import add_dry_run, add_options, add_overwrite, add_token
from .shell import add_command, add_command_group, refusing


def run_data_prepare(args: argparse.Namespace) -> int:
    """`tireid data prepare`: a dataset as Parquet shards with embedded images and a dataset card."""
    from ..data.prepare import prepare_dataset
    from ..hub.dataset_card import render_dataset_card

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    refuse_overlap(args.out, "--out", {"--root": args.root})
    if Path(args.out).exists() and not args.overwrite:
        raise TIReIDInputError(f"{args.out} already exists (pass --overwrite to replace it)")
    options = dict(args.option)
    if args.dataset != "synthetic":
        options.update(skip_bad_images=args.skip_bad_images, verify_images=not args.no_verify_images)
    with refusing(OSError, TypeError, ValueError):
        dataset = load_tireid_dataset(args.dataset, args.root, **options)
        card = render_dataset_card(args.dataset, dataset, options=options)
        out = prepare_dataset(dataset, args.out, name=args.dataset, card=str(card),
                              max_rows_per_shard=args.max_rows_per_shard, overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0


def run_data_push(args: argparse.Namespace) -> int:
    """`tireid data push`: a prepared folder uploaded to a Hub dataset repo."""
    from ..hub.dataset_push import push_dataset, write_dataset_folder
    from ..hub.upload import check_repo_id

    with refusing(OSError, ValueError):
        check_repo_id(args.repo, "--repo")
        if args.dry_run:
            refuse_overlap(args.dry_run, "--dry-run", {"--data": args.data})
            print(f"wrote {write_dataset_folder(args.data, args.dry_run, overwrite=args.overwrite)}")
        else:
            print(push_dataset(args.data, args.repo, private=not args.public, token=args.token))
    return 0


def run_data_export_synthetic(args: argparse.Namespace) -> int:
    """`tireid data export-synthetic`: the synthetic dataset in the CUHK-PEDES raw format."""
    from ..data.synthetic import export_cuhk_format

    with refusing(OSError, TypeError, ValueError):
        print(f"wrote {export_cuhk_format(args.out, **dict(args.option))}")
    return 0


def add_data_parser(subparsers) -> None:
    """Adds `tireid data {prepare,push,export-synthetic}`."""
    commands = add_command_group(subparsers, "data", "data_command", "DATA_COMMAND",
                                 help="prepare, push or generate datasets")

    prepare = add_command(commands, "prepare", run_data_prepare,
                          help="write a dataset as Parquet shards with embedded images and a card")
    prepare.add_argument("--dataset", required=True, choices=DATASET_NAMES)
    prepare.add_argument("--root", help="folder of the original release (annotation file + imgs/); not for synthetic")
    prepare.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
    prepare.add_argument("--skip-bad-images", action="store_true", help="drop records whose image is missing or undecodable")
    prepare.add_argument("--no-verify-images", action="store_true", help="only check that images exist, do not decode-check them")
    prepare.add_argument("--max-rows-per-shard", type=POSITIVE_INTEGER, default=5000,
                         help="rows per Parquet shard (default: 5000)")
    add_overwrite(prepare)
    add_options(prepare)

    push = add_command(commands, "push", run_data_push,
                       help="upload a prepared folder to a Hub dataset repo (private by default)")
    push.add_argument("--data", required=True, help="folder written by `tireid data prepare`")
    push.add_argument("--repo", required=True, help="org/name of the dataset repository")
    push.add_argument("--public", action="store_true", help="create the repo public (never for CUHK-PEDES/ICFG-PEDES/RSTPReid without permission)")
    add_token(push)
    add_dry_run(push, "the folder")

    export = add_command(commands, "export-synthetic", run_data_export_synthetic,
                         help="write the synthetic dataset in the CUHK-PEDES raw format")
    export.add_argument("--out", required=True, help="new folder to hold reid_raw.json and imgs/")
    add_options(export)
