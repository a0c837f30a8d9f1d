"""The checkpoints the zoo publishes and their model cards (`hub_cards/<name>/README.md`).

* ``<method>-<dataset>`` for every method and real benchmark (15): trained by
  ``configs/<method>_<dataset>.yaml``. Until a run's ``results.json`` is given (``--runs``), the card
  says the checkpoint is not trained yet, shows that configuration and the seed paper's reported
  figures (the method's config class's ``zoo_reported``) labelled as reported, and has no ``model-index``.
* ``irra-<dataset>`` (3): IRRA's released checkpoints converted by ``tireid convert irra``; their
  ``model-index`` carries the figures IRRA's authors report for those very weights, with the source.

``tireid cards --out hub_cards`` renders them all (re-runnable: it replaces the folder);
``tireid push --card hub_cards/<name>/README.md`` uploads one with its model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, ModelCard

from ..files import atomic_directory
from ..modeling import METHODS
from .dataset_card import SOURCES
from .model_card import METRICS, TASK, card_data, card_from_template, render_model_card
from .zoo_results import synthetic_results

ZOO_DATASETS = ("cuhk-pedes", "icfg-pedes", "rstpreid")
DEFAULT_ORG = "tireid-hf"
IRRA_URL = "https://github.com/anosorae/IRRA"
IRRA_COMMIT = "cfc23785545ead82dee2749fa0fc0ad948c96430"


@dataclass(frozen=True)
class ReleasedCheckpoint:
    """A checkpoint released by a method's authors that `tireid convert` turns into a zoo model.

    ``metrics`` are R@1, R@5, R@10, mAP, mINP on the test split as the authors report them for it.
    """

    name: str
    method: str
    dataset: str
    variant: str
    download_url: str
    metrics: tuple[float, float, float, float, float]
    source_name: str = "IRRA (Jiang & Ye, CVPR 2023)"
    source_url: str = IRRA_URL
    reported_at: str = f"the README of {IRRA_URL} at commit {IRRA_COMMIT[:7]}, beside the checkpoint's link"
    base_model: str = "openai/clip-vit-base-patch16"
    image_size: tuple[int, int] = (384, 128)
    caveat: str = ("IRRA was trained with its implicit relation reasoning (MLM) head as well; that head is used "
                   "only in training and is dropped by the conversion (listed in `conversion.json`).")


RELEASED = (
    ReleasedCheckpoint("irra-cuhk-pedes", "clip_reid", "cuhk-pedes", "irra",
                       "https://drive.google.com/file/d/1OBhFhpZpltRMZ88K6ceNUv4vZgevsFCW/view",
                       (73.38, 89.93, 93.71, 66.13, 50.24)),
    ReleasedCheckpoint("irra-icfg-pedes", "clip_reid", "icfg-pedes", "irra",
                       "https://drive.google.com/file/d/1Y3D7zZsKPpuEHWJ9nVecUW-HaKdjDI9g/view",
                       (63.46, 80.24, 85.82, 38.05, 7.92)),
    ReleasedCheckpoint("irra-rstpreid", "clip_reid", "rstpreid", "irra",
                       "https://drive.google.com/file/d/1LpUHkLErEWkJiXyWYxWwiK-8Fz1_1QGY/view",
                       (60.20, 81.30, 88.20, 47.17, 25.28)),
)


def zoo_names() -> list[tuple[str, str, str]]:
    """``(name, method, dataset)`` of the zoo's own checkpoints, methods in registry order."""
    return [(f"{method}-{dataset}", method, dataset) for method in METHODS for dataset in ZOO_DATASETS]


def _has_rerank(method: str) -> bool:
    """Whether the method has a second retrieval stage (`has_rerank_stage`), shown in the card's example."""
    return METHODS[method][1].has_rerank_stage


def _read_config(configs_dir: Path, method: str, dataset: str) -> tuple[str, str, dict]:
    path = configs_dir / f"{method}_{dataset}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the training configuration of {method}-{dataset} is missing")
    text = path.read_text()
    return f"configs/{path.name}", text, yaml.safe_load(text)


def untrained_card(method: str, dataset: str, *, org: str, configs_dir: Path, synthetic: dict | None = None) -> ModelCard:
    """The card of a zoo checkpoint that has not been trained: its configuration and the paper's
    reported figures (``zoo_reported``, labelled), no results and no `model-index`; ``synthetic``: the
    method's zoo results on the synthetic benchmark (:func:`~.zoo_results.synthetic_results`)."""
    config_file, config_text, config = _read_config(configs_dir, method, dataset)
    repo_id = f"{org}/{method}-{dataset}"
    data = card_data(method, dataset, repo_id=repo_id, base_model=config.get("clip_name_or_path"),
                     dataset_repo=f"{org}/{dataset}")
    paper = METHODS[method][0].zoo_reported
    reported = {"backbone": paper.get("backbone", "unknown"), "figures": paper.get(dataset)}
    return card_from_template(
        data, repo_id=repo_id, method=method, dataset=dataset, status="untrained", config_file=config_file,
        image_size=config.get("model_config", {}).get("image_size", (384, 128)), config_yaml=config_text,
        reported=reported, has_rerank=_has_rerank(method), synthetic=synthetic)


def released_card(checkpoint: ReleasedCheckpoint, *, org: str, configs_dir: Path, synthetic: dict | None = None) -> ModelCard:
    """The card of an authors' checkpoint converted into the zoo: its `model-index` holds the authors'
    reported test figures with their source."""
    config_file, config_text, _ = _read_config(configs_dir, checkpoint.method, checkpoint.dataset)
    repo_id = f"{org}/{checkpoint.name}"
    pretty = SOURCES[checkpoint.dataset]["pretty_name"]
    results = [EvalResult(task_type=TASK[0], task_name=TASK[1], dataset_type=f"{org}/{checkpoint.dataset}",
                          dataset_name=pretty, dataset_split="test", metric_type=metric_type, metric_name=name,
                          metric_value=value, source_name=f"{checkpoint.source_name}, reported",
                          source_url=checkpoint.source_url)
               for (metric_type, name), value in zip(METRICS.values(), checkpoint.metrics)]
    data = card_data(checkpoint.method, checkpoint.dataset, repo_id=repo_id, base_model=checkpoint.base_model,
                     dataset_repo=f"{org}/{checkpoint.dataset}", eval_results=results)
    command = (f"tireid convert irra best.pth --variant {checkpoint.variant} --image-size "
               f"{checkpoint.image_size[0]} {checkpoint.image_size[1]} --out {checkpoint.name}")
    converted = dict(source_name=checkpoint.source_name, source_url=checkpoint.download_url, metrics=checkpoint.metrics,
                     reported_at=checkpoint.reported_at, caveat=checkpoint.caveat, command=command)
    return card_from_template(
        data, repo_id=repo_id, method=checkpoint.method, dataset=checkpoint.dataset, status="converted",
        image_size=checkpoint.image_size, config_yaml=config_text, config_file=config_file, converted=converted,
        has_rerank=_has_rerank(checkpoint.method), synthetic=synthetic)


def trained_card(run_dir: Path, *, org: str, name: str, dataset: str) -> ModelCard:
    """The card of a trained zoo checkpoint, from the run folder's `results.json` and `config.json`."""
    from transformers import AutoConfig

    import tireid_hf  # noqa: F401  (registers the tireid configs)

    results = json.loads((run_dir / "results.json").read_text())
    return render_model_card(results, AutoConfig.from_pretrained(run_dir), repo_id=f"{org}/{name}",
                             dataset_repo=f"{org}/{dataset}")


def render_catalogue(out: str | os.PathLike = "hub_cards", *, configs_dir: str | os.PathLike = "configs",
                     org: str = DEFAULT_ORG, runs_dir: str | os.PathLike | None = None,
                     zoo_results_dir: str | os.PathLike | None = None) -> list[str]:
    """Writes ``out/<name>/README.md`` for every published checkpoint (the whole folder is replaced at
    once) and returns the names. A zoo checkpoint with a run folder ``runs_dir/<name>/`` (holding
    ``results.json``) gets the card of its results; with ``zoo_results_dir`` (the report's JSON, e.g.
    ``benchmarks/``) the untrained and converted cards show their method's synthetic-benchmark results."""
    configs_dir = Path(configs_dir)
    synthetic = {method: synthetic_results(method, zoo_results_dir) if zoo_results_dir else None
                 for method in METHODS}
    cards = {}
    for name, method, dataset in zoo_names():
        run_dir = Path(runs_dir) / name if runs_dir else None
        if run_dir is not None and (run_dir / "results.json").is_file():
            cards[name] = trained_card(run_dir, org=org, name=name, dataset=dataset)
        else:
            cards[name] = untrained_card(method, dataset, org=org, configs_dir=configs_dir, synthetic=synthetic[method])
    for checkpoint in RELEASED:
        cards[checkpoint.name] = released_card(checkpoint, org=org, configs_dir=configs_dir,
                                               synthetic=synthetic[checkpoint.method])
    with atomic_directory(out, overwrite=True) as folder:
        for name, card in cards.items():
            (folder / name).mkdir()
            card.save(folder / name / "README.md")
    return list(cards)
