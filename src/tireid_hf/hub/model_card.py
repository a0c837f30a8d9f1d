"""Render the model card (`cards/model_card.md`) of a trained model from its `results.json`.

The card's metadata holds a `model-index` with one `EvalResult` per metric (R@1, R@5, R@10, mAP,
mINP) of the test split, the validation split that selected the checkpoint and, for a method with a
second stage (CADA), the re-ranked test split.
"""

from __future__ import annotations


import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..data import REDISTRIBUTION_RESTRICTED
from ..methods import card_section_path
from . import CARDS
from .dataset_card import SOURCES

TEMPLATE = CARDS / "model_card.md"

# results.json key suffix -> (model-index metric type, displayed name)
METRICS = {"R1": ("recall@1", "R@1"), "R5": ("recall@5", "R@5"), "R10": ("recall@10", "R@10"),
           "mAP": ("mAP", "mAP"), "mINP": ("mINP", "mINP")}
TASK = ("text-to-image-retrieval", "Text-to-image person re-identification")
# Hub pipeline tags have no text-to-image ranking task. The model maps both captions and images to
# embeddings compared by cosine, so `feature-extraction` is the honest one (`zero-shot-image-
# classification` would make the Hub widget treat captions as class labels of a single image).
PIPELINE_TAG = "feature-extraction"
TAGS = ["tireid-hf", "text-to-image-retrieval", "person-re-identification", "text-based-person-search", "clip"]


def method_section(method: str) -> str:
    """The method's model-card section (`cards/methods/<method>.md`, or the one it was registered with)."""
    path = card_section_path(method)
    if not path.is_file():
        raise FileNotFoundError(f"no model-card section for method {method!r}: {path} is missing")
    return path.read_text().strip()


def result_splits(results: dict) -> list[tuple[str, bool, str, dict]]:
    """``(split, reranked, label, metrics)`` for every evaluation in `results` (a `results.json`),
    test first."""
    splits = [("test", False, "test", results["test"])]
    if "test_reranked" in results:
        splits.append(("test", True, "test, re-ranked", results["test_reranked"]))
    splits.append(("validation", False, "validation (best)", results["best_validation"]["metrics"]))
    return splits


def eval_results(results: dict, dataset_type: str, dataset_name: str) -> list[EvalResult]:
    """One `EvalResult` per metric and evaluated split of `results`."""
    entries = []
    for split, reranked, _, metrics in result_splits(results):
        for key, (metric_type, name) in METRICS.items():
            entries.append(EvalResult(
                task_type=TASK[0], task_name=TASK[1], dataset_type=dataset_type, dataset_name=dataset_name,
                dataset_split=split, metric_type=metric_type + ("-reranked" if reranked else ""),
                metric_name=name + (" (re-ranked)" if reranked else ""), metric_value=round(float(metrics[f"t2i/{key}"]), 2),
            ))
    return entries


def card_data(method: str, dataset: str, *, repo_id: str, base_model: str | None, license: str | None = None,
              dataset_repo: str | None = None, eval_results: list[EvalResult] | None = None) -> ModelCardData:
    """The Hub metadata of a model card: licence (``other`` for the research-only benchmarks), library,
    pipeline tag, tags, base model, datasets and the `model-index` (omitted without results)."""
    return ModelCardData(
        language="en",
        license=license or ("other" if dataset in REDISTRIBUTION_RESTRICTED else "apache-2.0"),
        library_name="transformers",
        pipeline_tag=PIPELINE_TAG,
        tags=TAGS + [method],
        datasets=[dataset_repo] if dataset_repo else None,
        base_model=base_model,
        model_name=repo_id.split("/")[-1] if eval_results else None,
        eval_results=eval_results or None,
        tireid_method=method,
        tireid_dataset=dataset,
    )


def card_from_template(data: ModelCardData, *, repo_id: str, method: str, dataset: str, image_size,
                       config_yaml: str, status: str = "trained", **fields) -> ModelCard:
    """Renders `cards/model_card.md` for a checkpoint whose `status` is ``trained`` (its results),
    ``converted`` (a released checkpoint of the authors) or ``untrained`` (a planned checkpoint)."""
    defaults = dict(result_rows=[], has_rerank=False, figure=None, tireid_version="unknown", num_processes=1,
                    runtime=0.0, converted=None, reported=None, config_file=None, score_threshold=None,
                    threshold_fpr=None, threshold_split=None, synthetic=None)
    return ModelCard.from_template(
        data,
        template_path=str(TEMPLATE),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        method=method,
        dataset_name=dataset,
        dataset_pretty=SOURCES.get(dataset, {}).get("pretty_name", dataset),
        base_model=data.base_model,
        image_size=list(image_size),
        method_section=method_section(method),
        config_yaml=config_yaml,
        status=status,
        **dict(defaults, **fields),
    )


def render_model_card(results: dict, config, *, repo_id: str, license: str | None = None,
                      dataset_repo: str | None = None, figure: str | None = None) -> ModelCard:
    """The model card of a trained model.

    Args:
        results: the run's `results.json` (keys `method`, `dataset`, `test`, `best_validation`,
            `config`, optional `test_reranked`; `score_threshold`, `threshold_fpr` and `threshold_split`,
            where present, give the card its same-person threshold line).
        config: the model's `TIReIDConfig` (image size; `rerank_scores` support by method).
        repo_id: the Hub repo the card is written for (used in the loading examples).
        license: defaults to `apache-2.0`, or `other` for a model trained on a benchmark whose images
            may not be redistributed (CUHK-PEDES, ICFG-PEDES, RSTPReid: research use only).
        dataset_repo: the Hub dataset the model was trained on, if it is on the Hub.
        figure: file name of a picture in the model folder to show (UIT's restoration).
    """
    for key in ("method", "dataset", "test", "best_validation", "config"):
        if key not in results:
            raise KeyError(f"results.json has no {key!r}: it must be the file train.py writes")
    method, dataset = results["method"], results["dataset"]
    pretty = SOURCES.get(dataset, {}).get("pretty_name", dataset)
    data = card_data(method, dataset, repo_id=repo_id, license=license, dataset_repo=dataset_repo,
                     base_model=results["config"].get("model", {}).get("clip_name_or_path"),
                     eval_results=eval_results(results, dataset_repo or dataset, pretty))
    rows = [dict(name=label, values=[metrics[f"t2i/{key}"] for key in METRICS])
            for _, _, label, metrics in result_splits(results)]
    return card_from_template(
        data, repo_id=repo_id, method=method, dataset=dataset, image_size=config.image_size,
        config_yaml=yaml.safe_dump(results["config"], sort_keys=False),
        result_rows=rows,
        has_rerank="test_reranked" in results,
        figure=figure,
        tireid_version=results.get("tireid_hf_version", "unknown"),
        num_processes=results.get("num_processes", 1),
        runtime=float(results.get("train_runtime_seconds", 0.0)),
        library_versions=results.get("library_versions", {}),
        score_threshold=results.get("score_threshold"),
        threshold_fpr=results.get("threshold_fpr"),
        threshold_split=results.get("threshold_split"),
    )
