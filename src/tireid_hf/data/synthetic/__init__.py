"""The `synthetic` dataset: procedural pedestrians with attribute captions, deterministic by seed.

>>> from tireid_hf.data import load_tireid_dataset
>>> ds = load_tireid_dataset("synthetic", num_train_ids=20, num_validation_ids=5, num_test_ids=5)
>>> ds["train"][0]["captions"]  # doctest: +SKIP
['A woman with long black hair is wearing a red t-shirt and blue jeans.', ...]

Identity ``pid`` of split ``s`` is the ``pid``-th identity of that split; `identity_attributes`
returns its attributes (the synthetic-only ground truth: they are not a dataset column).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from datasets import Dataset, DatasetDict
from tqdm.auto import tqdm

from ...files import atomic_directory
from ..schema import FEATURES, SPLITS
from .attributes import VOCABULARY, Identity, sample_unique_identities
from .captions import Caption, write_captions
from .draw import VIEWS, render_person

__all__ = [
    "SyntheticConfig", "VOCABULARY", "Identity", "identities_by_split", "identity_attributes",
    "generate_image", "iter_examples", "load_synthetic", "export_cuhk_format",
]

_SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}
_SOURCE_HASH = hashlib.sha256(
    b"".join((Path(__file__).parent / f).read_bytes() for f in ("__init__.py", "attributes.py", "captions.py", "draw.py"))
).hexdigest()[:16]


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and seed of a synthetic dataset; every field is a keyword of `load_tireid_dataset("synthetic", ...)`.

    Args:
        num_train_ids / num_validation_ids / num_test_ids (int): identities per split (disjoint).
        images_per_id (int): images of each identity (views cycle front, back, side, ...).
        captions_per_image (int): captions written for each image.
        image_height / image_width (int): image size in pixels (defaults 192 x 64, 3:1 like ReID crops).
        seed (int): the seed; the same config always gives the same bytes.
    """

    num_train_ids: int = 200
    num_validation_ids: int = 50
    num_test_ids: int = 50
    images_per_id: int = 4
    captions_per_image: int = 2
    image_height: int = 192
    image_width: int = 64
    seed: int = 0

    def __post_init__(self):
        for name, value in asdict(self).items():
            if name != "seed" and (not isinstance(value, int) or value < 1):
                raise ValueError(f"SyntheticConfig.{name} must be a positive int, got {value!r}")

    def num_ids(self, split: str) -> int:
        """Returns the number of identities of `split`."""
        return {"train": self.num_train_ids, "validation": self.num_validation_ids, "test": self.num_test_ids}[split]


def identities_by_split(config: SyntheticConfig) -> dict[str, list[Identity]]:
    """Returns the identities of each split: unique attribute combinations, so splits are identity-disjoint."""
    identities = sample_unique_identities(sum(config.num_ids(s) for s in SPLITS), config.seed)
    out, start = {}, 0
    for split in SPLITS:
        out[split] = identities[start : start + config.num_ids(split)]
        start += config.num_ids(split)
    return out


def identity_attributes(split: str, pid: int, **config) -> dict:
    """Returns the attributes (see `VOCABULARY`) of identity `pid` of `split` in the dataset built from `config`."""
    return identities_by_split(SyntheticConfig(**config))[split][pid].as_dict()


def image_name(split: str, pid: int, index: int) -> str:
    """Returns the stable relative path of an image, e.g. ``train/0003_02.png``."""
    return f"{split}/{pid:04d}_{index:02d}.png"


def generate_image(identity: Identity, config: SyntheticConfig, split: str, pid: int, index: int) -> tuple[bytes, list[Caption]]:
    """Returns the PNG bytes and the captions of image `index` of identity `pid` of `split`.

    Each image has its own generator seeded by (seed, split, pid, index), so any image can be
    regenerated alone and in any order. The view cycles front, back, side with (index + pid).
    """
    rng = np.random.default_rng([config.seed, _SPLIT_CODES[split], pid, index])
    view = VIEWS[(index + pid) % len(VIEWS)]
    image = render_person(identity, view, rng, config.image_height, config.image_width)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue(), write_captions(identity, view, rng, config.captions_per_image)


def iter_examples(config: SyntheticConfig, split: str, pids: list[int] | None = None, progress: bool = False) -> Iterator[dict]:
    """Yields the rows (`FEATURES`) of `split`, for identities `pids` (default all), images embedded as PNG bytes."""
    identities = identities_by_split(config)[split]
    pids = range(len(identities)) if pids is None else pids
    for pid in tqdm(pids, desc=f"synthetic {split}", unit="id", disable=not progress):
        for index in range(config.images_per_id):
            png, captions = generate_image(identities[pid], config, split, pid, index)
            name = image_name(split, pid, index)
            yield {"image": {"bytes": png, "path": name}, "image_path": name, "pid": pid, "captions": [c.text for c in captions]}


def _generate_split(config: dict, split: str, pid_chunks: list[list[int]]) -> Iterator[dict]:
    cfg = SyntheticConfig(**config)
    for pids in pid_chunks:  # `datasets` hands each worker a sub-list of the chunks
        yield from iter_examples(cfg, split, pids, progress=len(pids) > 500)


def load_synthetic(*, cache_dir: str | None = None, num_proc: int | None = None, **config) -> DatasetDict:
    """Returns the synthetic `DatasetDict` for `SyntheticConfig(**config)`.

    Rows are written to the `datasets` cache (`cache_dir`, default the HF cache) under a fingerprint
    of the config and of this package's source, so a second call with the same config is a cache hit
    and memory stays bounded by a writer batch. `num_proc` generates identities in parallel.
    """
    cfg = SyntheticConfig(**config)
    splits = {}
    for split in SPLITS:
        fingerprint = hashlib.sha256(f"{_SOURCE_HASH}|{sorted(asdict(cfg).items())}|{split}".encode()).hexdigest()[:24]
        splits[split] = Dataset.from_generator(
            _generate_split,
            features=FEATURES,
            gen_kwargs={"config": asdict(cfg), "split": split, "pid_chunks": _chunks(cfg.num_ids(split), num_proc or 1)},
            cache_dir=cache_dir,
            num_proc=num_proc,
            split=split,
            fingerprint=f"tireid-synthetic-{fingerprint}",
        )
    return DatasetDict(splits)


def _chunks(count: int, parts: int) -> list[list[int]]:
    """Returns range(count) cut into `parts` contiguous lists (one per worker)."""
    return [chunk.tolist() for chunk in np.array_split(np.arange(count), min(parts, count))]


def export_cuhk_format(root: str | os.PathLike, **config) -> Path:
    """Writes the synthetic dataset in the CUHK-PEDES release format and returns `root`.

    `root` gets ``reid_raw.json`` (records ``split`` train/val/test, ``captions``, ``file_path``
    relative to ``imgs/``, ``processed_tokens``, ``id``; ids are unique across splits) and
    ``imgs/<split>/<pid>_<index>.png`` (split: train / validation / test). Everything is written to a
    temporary sibling folder first, then renamed, so a failure leaves nothing behind. `root` must not
    exist yet.
    """
    cfg = SyntheticConfig(**config)
    with atomic_directory(root, overwrite_hint="choose a new folder") as tmp:
        records, offset = [], 0
        for split in SPLITS:
            for row in iter_examples(cfg, split, progress=cfg.num_ids(split) > 500):
                target = tmp / "imgs" / row["image_path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(row["image"]["bytes"])
                records.append({
                    "split": "val" if split == "validation" else split,
                    "captions": row["captions"],
                    "file_path": row["image_path"],
                    "processed_tokens": [c.lower().replace(".", " ").replace(",", " ").split() for c in row["captions"]],
                    "id": offset + row["pid"],
                })
            offset += cfg.num_ids(split)
        (tmp / "reid_raw.json").write_text(json.dumps(records), encoding="utf-8")
    return Path(root)
