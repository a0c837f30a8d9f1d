"""`load_tireid_dataset`: one entry point for the three benchmarks, the synthetic set and any HF dataset."""

from __future__ import annotations

import logging
import os

from datasets import DatasetDict

from .hf_datasets import OPTIONS, DatasetNotFound, normalize_dataset, read_hf_dataset
from .readers import RAW_FORMATS, read_raw_dataset
from .schema import summarize
from .synthetic import load_synthetic

logger = logging.getLogger(__name__)

DATASET_NAMES = (*RAW_FORMATS, "synthetic")
REDISTRIBUTION_RESTRICTED = tuple(RAW_FORMATS)  # released by request: never push these publicly without permission


def load_tireid_dataset(name: str | os.PathLike, root: str | os.PathLike | None = None,
                        column_mapping: str | dict | None = None, **options) -> DatasetDict:
    """Returns the `DatasetDict` (train / validation / test, columns `FEATURES`) of dataset `name`.

    Args:
        name: resolved in this order: "cuhk-pedes", "icfg-pedes", "rstpreid" (read from `root`, see
            `read_raw_dataset` for `options`) or "synthetic" (generated, no `root`; `options` are
            `SyntheticConfig` fields plus `cache_dir` and `num_proc`); else an existing folder (written by
            `save_to_disk` or `tireid data prepare`, Parquet shards, a Hub-layout dataset repo, or photos
            with ``metadata.jsonl``/``metadata.csv`` in the `imagefolder` layout); else a Hub dataset id.
            Those three are read by `read_hf_dataset` and checked by `normalize_dataset` (`options`:
            ``validation_fraction``, ``test_fraction``, ``split_seed``, ``verify_images``).
        root: the folder holding the benchmark's annotation file and `imgs/` (benchmarks only).
        column_mapping: HF datasets only: ``{zoo column: dataset column}`` or ``"caption=description,pid=id"``.
    """
    if name in DATASET_NAMES and column_mapping:
        raise ValueError(f"column_mapping applies to dataset folders and Hub datasets, not to {name}")
    if name == "synthetic":
        if root is not None:
            raise ValueError("the synthetic dataset is generated and takes no root; export it with export_cuhk_format")
        dataset = load_synthetic(**options)
        logger.info(summarize(name, dataset))
        return dataset
    if name not in RAW_FORMATS:
        return _load_hf(str(name), root, column_mapping, options)
    if root is None:
        raise ValueError(f"{name} is read from its release on disk: pass root=<folder with the annotation file and imgs/>")
    if "validation_ids" in options and not RAW_FORMATS[name].carves_validation:
        raise ValueError(f"{name} ships its own validation split; validation_ids applies to icfg-pedes only")
    return read_raw_dataset(name, root, **options)


def _load_hf(name: str, root, column_mapping, options: dict) -> DatasetDict:
    unknown = f"unknown dataset {name!r}: not one of {', '.join(DATASET_NAMES)}"
    if root is not None:
        raise ValueError(f"{unknown}, whose release is read from root; a dataset folder or Hub id takes no root"
                         if not os.path.isdir(name) else f"{name} is a dataset folder and takes no root (got {root})")
    others = sorted(set(options) - set(OPTIONS))
    if others:
        raise ValueError(f"dataset option(s) {others} do not apply to {name}; a dataset folder or Hub dataset takes "
                         f"{', '.join(OPTIONS)}")
    try:
        dataset, source = read_hf_dataset(name)
    except DatasetNotFound as error:
        raise DatasetNotFound(f"{unknown}, {error}") from None
    dataset = normalize_dataset(dataset, source, column_mapping=column_mapping, **options)
    logger.info(summarize(name, dataset))
    return dataset
