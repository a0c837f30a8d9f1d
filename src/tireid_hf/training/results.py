"""The content of a run's ``results.json`` and its Markdown summary."""

from __future__ import annotations

import dataclasses

from .. import __version__
from .arguments import DataArguments, ModelArguments, TrainingArguments
from .checkpoints import TrainingProgress


def training_results(model_args: ModelArguments, data_args: DataArguments, args: TrainingArguments,
                     progress: TrainingProgress, *, num_processes: int, test: dict, best_config) -> dict:
    """``results.json`` of a finished run, in this key order: ``method``, ``dataset``, the versions of
    tireid-hf and of :func:`library_versions`, ``num_processes``, ``best_validation`` (the validation
    record the best model was chosen on), ``test`` (its test metrics), the same-person
    ``score_threshold`` and its ``threshold_fpr`` from ``best_config`` (picked on ``threshold_split``
    validation), ``train_runtime_seconds``, ``history`` (every train log and validation),
    ``backbone_gradient_norms`` and ``config`` (the three argument groups).

    ``backbone_gradient_norms`` is a list of ``{"stage": stage name, "step": the stage's optimizer step,
    "global_step": the run's, "terms": {loss name: L2 norm of d(w_k L_k)/d theta}, "total": L2 norm of
    d(sum_k w_k L_k)/d theta}`` over the trainable ``clip`` parameters theta, one at each stage's first
    step and at each of its validation steps, on the main process' batch (:mod:`.gradient_norms`)."""
    return {
        "method": model_args.method,
        "dataset": data_args.dataset,
        "tireid_hf_version": __version__,
        "library_versions": library_versions(),
        "num_processes": num_processes,
        "best_validation": progress.best,
        "test": test,
        "score_threshold": best_config.score_threshold,
        "threshold_fpr": best_config.score_threshold_fpr,
        "threshold_split": "validation",
        "train_runtime_seconds": progress.train_runtime_seconds,
        "history": progress.history,
        "backbone_gradient_norms": progress.backbone_gradient_norms,
        "config": {"model": dataclasses.asdict(model_args), "data": dataclasses.asdict(data_args),
                   "training": dataclasses.asdict(args)},
    }


def library_versions() -> dict[str, str]:
    """Versions of what the numbers depend on (Pillow's resize included: its output changed across majors)."""
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "transformers", "accelerate", "pillow", "numpy")}


def summary_table(results: dict) -> str:
    """A Markdown table of ``results``' t2i R1, R5, R10, mAP and mINP (two decimals): one row for the best
    validation, one for test, and one for the re-ranked test when there is one."""
    keys = ("R1", "R5", "R10", "mAP", "mINP")
    rows = [("validation (best)", results["best_validation"]["metrics"]), ("test", results["test"])]
    if "test_reranked" in results:
        rows.append(("test, re-ranked", results["test_reranked"]))
    lines = [f"| {results['method']} on {results['dataset']} | " + " | ".join(keys) + " |",
             "|---|" + "---|" * len(keys)]
    lines += [f"| {name} | " + " | ".join(f"{metrics[f't2i/{key}']:.2f}" for key in keys) + " |" for name, metrics in rows]
    return "\n".join(lines)
