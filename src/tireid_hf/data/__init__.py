"""Datasets: readers of the benchmarks' release formats, any HF dataset (folders, Hub ids, imagefolder photos),
the synthetic generator, Parquet preparation."""

from .hf_datasets import ZOO_COLUMNS, parse_column_mapping
from .loading import DATASET_NAMES, REDISTRIBUTION_RESTRICTED, load_tireid_dataset
from .schema import FEATURES, SPLITS, DatasetFormatError, summarize

__all__ = [
    "DATASET_NAMES", "REDISTRIBUTION_RESTRICTED", "FEATURES", "SPLITS", "DatasetFormatError",
    "ZOO_COLUMNS", "load_tireid_dataset", "parse_column_mapping", "summarize",
]
