"""Datasets: readers of the benchmarks' release formats, the synthetic generator, Parquet preparation."""

from .loading import DATASET_NAMES, REDISTRIBUTION_RESTRICTED, load_tireid_dataset
from .schema import FEATURES, SPLITS, DatasetFormatError, summarize

__all__ = [
    "DATASET_NAMES", "REDISTRIBUTION_RESTRICTED", "FEATURES", "SPLITS", "DatasetFormatError",
    "load_tireid_dataset", "summarize",
]
