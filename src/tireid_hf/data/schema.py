"""The row schema every TIReID dataset shares, the error raised on bad input, and split helpers."""

from __future__ import annotations

from datasets import DatasetDict, Features, Image, List, Value

from ..errors import TIReIDInputError

SPLITS = ("train", "validation", "test")

FEATURES = Features(
    {
        "image": Image(),
        "image_path": Value("string"),
        "pid": Value("int64"),
        "captions": List(Value("string")),
    }
)
"""One row per image: the image (decoded lazily), its path relative to the dataset root, the
identity (contiguous from 0 within each split) and every caption written for that image."""


class DatasetFormatError(TIReIDInputError):
    """Raised when a dataset on disk does not match its documented format.

    The message always names the file and, where there is one, the record index and field.
    """


def summarize(name: str, dataset: DatasetDict) -> str:
    """Returns a one-line summary such as ``cuhk-pedes: train 34054 images / 11003 ids / 68126 captions | ...``."""
    parts = []
    for split in SPLITS:
        if split not in dataset:
            continue
        ds = dataset[split]
        pids = ds["pid"]
        num_captions = sum(len(c) for c in ds["captions"])
        parts.append(f"{split} {ds.num_rows} images / {len(set(pids))} ids / {num_captions} captions")
    return f"{name}: " + " | ".join(parts)
