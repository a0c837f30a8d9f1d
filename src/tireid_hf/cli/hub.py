"""Commands that publish: ``tireid push`` (a model), ``push-metric``, ``push-space`` and ``cards``."""

from __future__ import annotations

import argparse

from ..errors import TIReIDInputError
from ..files import refuse_overlap
from .arguments import add_dry_run, add_model, add_token
from .shell import add_command, refusing


def run_push(args: argparse.Namespace) -> int:
    """`tireid push`: a trained model's Hub folder (inference weights, remote code, card), uploaded."""
    from ..hub.model_push import push_model, write_model_folder
    from ..hub.upload import check_repo_id

    with refusing(OSError, ValueError):
        check_repo_id(args.repo, "--repo")
        if args.dry_run:
            refuse_overlap(args.dry_run, "--dry-run", {"--model": args.model, "--card": args.card})
            print(f"wrote {write_model_folder(args.model, args.dry_run, args.repo, license=args.license, dataset_repo=args.dataset_repo, card=args.card, overwrite=args.overwrite)}")
        else:
            print(push_model(args.model, args.repo, private=args.private, license=args.license,
                             dataset_repo=args.dataset_repo, token=args.token, card=args.card))
    return 0


def run_push_metric(args: argparse.Namespace) -> int:
    """`tireid push-metric`: the tireid_retrieval metric as an evaluate-style Space."""
    from ..hub.metric_space import push_metric_space, write_metric_space
    from ..hub.upload import check_repo_id

    with refusing(OSError, ValueError):
        if args.repo:
            check_repo_id(args.repo, "--repo")
        if args.dry_run:
            print(f"wrote {write_metric_space(args.dry_run, overwrite=args.overwrite)}")
        elif not args.repo:
            raise TIReIDInputError("--repo org/name is required unless --dry-run OUT is given")
        else:
            print(push_metric_space(args.repo, private=args.private, token=args.token))
    return 0


def run_push_space(args: argparse.Namespace) -> int:
    """`tireid push-space`: the demo Space over a model and gallery."""
    from ..hub.demo_space import demo_source, push_space, write_space

    options = dict(model=args.model, gallery=args.gallery, space_dir=args.space_dir)
    with refusing(FileNotFoundError, FileExistsError):
        if args.dry_run:
            refuse_overlap(args.dry_run, "--dry-run", {"--model": args.model, "--gallery": args.gallery,
                                                       "--space-dir": args.space_dir or demo_source()})
            print(f"wrote {write_space(args.dry_run, overwrite=args.overwrite, **options)}")
        elif not args.repo:
            raise TIReIDInputError("--repo org/name is required unless --dry-run OUT is given")
        else:
            print(push_space(args.repo, private=args.private, token=args.token, **options))
    return 0


def add_push_parsers(subparsers) -> None:
    """Adds `tireid push` (a trained model), `push-metric` (the metric's Space) and `push-space` (the demo)."""
    push = add_command(
        subparsers, "push", run_push,
        help="upload a trained model (inference-only weights, remote code, processor, model card)",
        description="Prepare the Hub folder of a model trained by train.py (weights exported for inference, "
        "config.json with auto_map, remote code, processor, results.json, README.md model card) and upload it.",
    )
    add_model(push, help="folder written by train.py (with results.json)")
    push.add_argument("--repo", required=True, help="org/name of the model repository")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--license", default=None, help="card license (default: apache-2.0, other for research-only datasets)")
    push.add_argument("--dataset-repo", default=None, help="Hub dataset the model was trained on, for the card's metadata")
    add_token(push)
    push.add_argument("--card", default=None, help="upload this model card (e.g. hub_cards/<name>/README.md) instead of "
                      "rendering one from results.json; needed for a converted checkpoint")
    add_dry_run(push, "the folder")

    metric = add_command(subparsers, "push-metric", run_push_metric,
                         help="upload the tireid_retrieval metric as an evaluate-style Space")
    metric.add_argument("--repo", default=None, help="org/name of the Space (required unless --dry-run)")
    metric.add_argument("--private", action="store_true", help="create the Space private")
    add_token(metric)
    add_dry_run(metric, "the Space folder")

    space = add_command(
        subparsers, "push-space", run_push_space,
        help="upload the demo Space (app, pinned requirements, Space README) over a model and gallery",
        description="Write the demo Space folder (spaces/tireid-demo/app.py, space_settings.json, requirements.txt "
        "pinned to the installed versions, README.md with the Space metadata; a local model or gallery folder is "
        "copied in) and upload it in one commit.",
    )
    space.add_argument("--repo", default=None, help="org/name of the Space (required unless --dry-run)")
    add_model(space, required=False, help="model folder (copied into the Space) or Hub id; default: the Space's "
              "TIREID_MODEL variable")
    space.add_argument("--gallery", default=None, help="folder of images or prepared dataset (copied), or 'synthetic' (default)")
    space.add_argument("--space-dir", default=None, help="the demo's source folder (default: spaces/tireid-demo of this checkout)")
    space.add_argument("--private", action="store_true", help="create the Space private")
    add_token(space)
    add_dry_run(space, "the Space folder")


def run_cards(args: argparse.Namespace) -> int:
    """`tireid cards`: the model card of every checkpoint the zoo publishes."""
    from ..hub.catalogue import DEFAULT_ORG, render_catalogue

    refuse_overlap(args.out, "--out", {"--configs": args.configs, "--runs": args.runs, "--zoo-results": args.zoo_results})
    with refusing(FileNotFoundError):
        names = render_catalogue(args.out, configs_dir=args.configs, org=args.org or DEFAULT_ORG, runs_dir=args.runs,
                                 zoo_results_dir=args.zoo_results)
    print(f"wrote {len(names)} model cards to {args.out}/")
    return 0


def add_cards_parser(subparsers) -> None:
    """Adds `tireid cards`: the model card of every checkpoint the zoo publishes, into hub_cards/."""
    cards = add_command(
        subparsers, "cards", run_cards,
        help="render the model card of every checkpoint the zoo publishes (hub_cards/<name>/README.md)",
        description="Render hub_cards/ from the package's card templates and configs/*.yaml "
        "(run from the repository root); the folder is replaced whole. A zoo checkpoint whose run folder is in "
        "--runs (RUNS/<method>-<dataset>/results.json) gets the card of its results.",
    )
    cards.add_argument("--out", default="hub_cards", help="output folder (default: hub_cards)")
    cards.add_argument("--configs", default="configs", help="training configurations (default: configs)")
    cards.add_argument("--org", default=None, help="Hub organisation of the repositories (default: tireid-hf)")
    cards.add_argument("--runs", default=None, help="folder of trained runs, one per <method>-<dataset>")
    cards.add_argument("--zoo-results", default="benchmarks",
                       help="folder of the zoo report's JSON (zoo_summary.json, zoo_ablations.json): each card's "
                       "synthetic-benchmark section (default: benchmarks; none when absent)")
