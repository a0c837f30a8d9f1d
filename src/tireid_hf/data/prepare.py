"""Write a TIReID `DatasetDict` as Parquet shards with the image bytes embedded, plus a dataset card.

Layout of the output folder (what the Hub expects for a Parquet dataset)::

    OUT/README.md                                   dataset card (YAML `configs` name the splits)
    OUT/data/train-00000-of-00007.parquet ...       validation-*.parquet, test-*.parquet

`datasets.load_dataset("parquet", data_dir=OUT)` or `load_prepared(OUT)` gives the rows back.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict, load_dataset
from datasets.table import embed_table_storage
from tqdm.auto import tqdm

from ..files import atomic_directory
from .schema import summarize

logger = logging.getLogger(__name__)


def prepare_dataset(
    dataset: DatasetDict,
    out: str | os.PathLike,
    *,
    name: str = "dataset",
    max_rows_per_shard: int = 5000,
    rows_per_group: int = 100,
    card: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Writes `dataset` to `out` as Parquet shards with embedded images (and `card`); returns `out`.

    Images are read and embedded `rows_per_group` rows at a time (one Parquet row group), so memory
    is bounded by one row group of encoded image bytes whatever the dataset size; nothing is decoded.
    Everything is written into a temporary sibling folder that is renamed to `out` only at the end:
    on failure `out` is left untouched and no partial folder remains.

    Args:
        dataset: the splits to write (any of train / validation / test).
        out: the output folder; it must not exist unless `overwrite`.
        name: the dataset name used in the log summary.
        max_rows_per_shard: rows per Parquet file.
        rows_per_group: rows per Parquet row group (the unit of reading, embedding and writing).
        card: the dataset card (Markdown with YAML front matter, see `tireid_hf.hub.dataset_card`),
            written as README.md.
    """
    with atomic_directory(out, overwrite=overwrite) as tmp:
        (tmp / "data").mkdir()
        for split, ds in dataset.items():
            _write_split(ds, tmp / "data", split, max_rows_per_shard, rows_per_group)
        if card is not None:
            (tmp / "README.md").write_text(card, encoding="utf-8")
    logger.info("wrote %s to %s", summarize(name, dataset), out)
    return Path(out)


def _write_split(ds: Dataset, folder: Path, split: str, max_rows_per_shard: int, rows_per_group: int) -> None:
    """Writes `ds` as ``{split}-{i:05d}-of-{n:05d}.parquet`` files, embedding image bytes group by group."""
    num_shards = max(1, math.ceil(ds.num_rows / max_rows_per_shard))
    schema = ds.features.arrow_schema
    arrow = ds.with_format("arrow")
    with tqdm(total=ds.num_rows, desc=f"prepare {split}", unit="img", disable=ds.num_rows < 1000) as bar:
        for shard in range(num_shards):
            start, stop = shard * max_rows_per_shard, min(ds.num_rows, (shard + 1) * max_rows_per_shard)
            with pq.ParquetWriter(folder / f"{split}-{shard:05d}-of-{num_shards:05d}.parquet", schema) as writer:
                for lo in range(start, stop, rows_per_group):
                    table = arrow[lo : min(stop, lo + rows_per_group)].replace_schema_metadata(schema.metadata)
                    writer.write_table(embed_table_storage(table), row_group_size=rows_per_group)
                    bar.update(table.num_rows)


def load_prepared(out: str | os.PathLike) -> DatasetDict:
    """Returns the `DatasetDict` written by `prepare_dataset` into `out`."""
    return load_dataset("parquet", data_dir=str(out))
