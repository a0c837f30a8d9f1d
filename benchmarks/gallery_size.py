"""Test R@1 of trained models against the size of the gallery they search.

R@1 falls as the gallery grows: more identities means more look-alikes. The zoo's synthetic test split
is 250 identities (1,000 images, 2,000 captions); the earlier one was 50 identities (200 images). This
script scores the same trained model on the whole test split and on random sub-galleries of
``--identities`` identities (their images as the gallery, their captions as the queries), so that a
figure measured on one gallery size can be read against a target set on another.

    python benchmarks/gallery_size.py benchmarks/runs/clip_reid-seed0 benchmarks/runs/clip_reid-seed1 \\
        --identities 50 --draws 200

Each model's images and captions are embedded once (``tireid_hf.retrieval.embed_images`` /
``embed_texts``); a draw keeps the rows and columns of ``similarity = text_embeds @ image_embeds.T``
[2,000, 1,000] of its identities and scores them with ``rank_metrics``. Prints, per model, the full
split's R@1 / mAP and the draws' mean and 2.5-97.5 % range.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
import yaml
from transformers import AutoModel, AutoProcessor

import tireid_hf  # noqa: F401  (registers the Auto classes)
from tireid_hf.data import load_tireid_dataset
from tireid_hf.metrics.retrieval import rank_metrics
from tireid_hf.retrieval.embedding import embed_images, embed_texts
from tireid_hf.retrieval.evaluation import split_queries


def evaluated_test_split(model_dir: Path):
    """The test split the run in ``model_dir`` was evaluated on (its ``training_args.yaml``'s dataset)."""
    arguments = yaml.safe_load((model_dir / "training_args.yaml").read_text())
    if arguments["dataset"] != "synthetic":
        raise ValueError(f"{model_dir}/training_args.yaml: dataset {arguments['dataset']!r}; this script regenerates the synthetic one only")
    return load_tireid_dataset("synthetic", **(arguments.get("dataset_options") or {}))["test"]


def identity_draws(pids: torch.Tensor, identities: int, draws: int, seed: int = 0) -> list[torch.Tensor]:
    """``draws`` random sets of ``identities`` of the distinct ``pids`` (a seeded generator of its own)."""
    pids = pids.unique()
    if not 0 < identities <= len(pids):
        raise ValueError(f"--identities must be in 1..{len(pids)} (the split's identities), got {identities}")
    generator = torch.Generator().manual_seed(seed)
    return [pids[torch.randperm(len(pids), generator=generator)[:identities]] for _ in range(draws)]


def mean_and_range(values: list[float]) -> tuple[float, float, float]:
    """The mean of ``values`` and the range of their middle 95 % (2.5th and 97.5th of the sorted values)."""
    ordered = sorted(values)
    return statistics.mean(ordered), ordered[int(0.025 * len(ordered))], ordered[int(0.975 * len(ordered)) - 1]


def gallery_size_metrics(similarity: torch.Tensor, text_pids: torch.Tensor, image_pids: torch.Tensor,
                         identities: int, draws: int, seed: int = 0) -> list[dict[str, float]]:
    """``rank_metrics`` (t2i) of ``draws`` random sub-galleries of ``identities`` identities each
    (:func:`identity_draws`): the rows (captions) and columns (images) of ``similarity`` [Q, G] whose pid
    is among them."""
    results = []
    for chosen in identity_draws(image_pids, identities, draws, seed):
        rows, columns = torch.isin(text_pids, chosen), torch.isin(image_pids, chosen)
        results.append(rank_metrics(similarity[rows][:, columns], text_pids[rows], image_pids[columns]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="trained model folders (train.py's output_dir)")
    parser.add_argument("--identities", type=int, default=50)
    parser.add_argument("--draws", type=int, default=200)
    args = parser.parse_args()
    split = evaluated_test_split(args.models[0])
    texts, text_pids = split_queries(split)
    text_pids, image_pids = torch.tensor(text_pids), torch.tensor(list(split["pid"]))
    images = split["image"]
    summary = {}
    for model_dir in args.models:
        model, processor = AutoModel.from_pretrained(model_dir).eval(), AutoProcessor.from_pretrained(model_dir)
        with torch.inference_mode():
            similarity = (embed_texts(model, processor, texts, batch_size=256, show_progress=False)
                          @ embed_images(model, processor, images, batch_size=256, show_progress=False).T)
        full = rank_metrics(similarity, text_pids, image_pids)
        mean, low, high = mean_and_range([result["R1"] for result in gallery_size_metrics(
            similarity, text_pids, image_pids, args.identities, args.draws)])
        summary[str(model_dir)] = {"full_identities": len(image_pids.unique()), "full_R1": full["R1"],
                                   "full_mAP": full["mAP"], "identities": args.identities, "draws": args.draws,
                                   "sub_R1_mean": mean, "sub_R1_range": [low, high]}
        print(f"{model_dir}: R@1 {full['R1']:.2f} on all {len(image_pids.unique())} test identities; "
              f"{mean:.2f} [{low:.2f}, {high:.2f}] on {args.identities}-identity sub-galleries "
              f"({args.draws} draws)", flush=True)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
