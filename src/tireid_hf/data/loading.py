"""`load_tireid_dataset`: one entry point for the three benchmarks and the synthetic set."""

from __future__ import annotations

import logging
import os

from datasets import DatasetDict

from .readers import RAW_FORMATS, read_raw_dataset
from .schema import summarize
from .synthetic import load_synthetic

logger = logging.getLogger(__name__)

DATASET_NAMES = (*RAW_FORMATS, "synthetic")
REDISTRIBUTION_RESTRICTED = tuple(RAW_FORMATS)  # released by request: never push these publicly without permission


def load_tireid_dataset(name: str, root: str | os.PathLike | None = None, **options) -> DatasetDict:
    """Returns the `DatasetDict` (train / validation / test, columns `FEATURES`) of dataset `name`.

    Args:
        name: "cuhk-pedes", "icfg-pedes", "rstpreid" (read from `root`, see `read_raw_dataset` for
            `options`) or "synthetic" (generated, no `root`; `options` are `SyntheticConfig` fields
            plus `cache_dir` and `num_proc`).
        root: the folder holding the benchmark's annotation file and `imgs/`.
    """
    if name == "synthetic":
        if root is not None:
            raise ValueError("the synthetic dataset is generated and takes no root; export it with export_cuhk_format")
        dataset = load_synthetic(**options)
        logger.info(summarize(name, dataset))
        return dataset
    if name not in RAW_FORMATS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASET_NAMES)}")
    if root is None:
        raise ValueError(f"{name} is read from its release on disk: pass root=<folder with the annotation file and imgs/>")
    if "validation_ids" in options and not RAW_FORMATS[name].carves_validation:
        raise ValueError(f"{name} ships its own validation split; validation_ids applies to icfg-pedes only")
    return read_raw_dataset(name, root, **options)
