"""Readers of the three benchmarks' original release formats into a `datasets.DatasetDict`.

CUHK-PEDES and ICFG-PEDES share one record schema (``split``, ``captions``, ``file_path``, ``id``);
RSTPReid names the path field ``img_path``. One reader, parametrised by `RawFormat`, handles all three.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict
from tqdm.auto import tqdm

from ..files import OutsideRootError, resolve_inside
from ..images import ImageFileError, read_image
from ..processing import has_visible_text
from .schema import FEATURES, DatasetFormatError, summarize

logger = logging.getLogger(__name__)

_SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}


@dataclass(frozen=True)
class RawFormat:
    """How one benchmark lays out its annotation file and images under the dataset root."""

    name: str
    annotation_files: tuple[str, ...]  # accepted file names, the first one present is read
    path_field: str  # record field holding the image path, relative to `image_dir`
    image_dir: str = "imgs"
    carves_validation: bool = False  # the release has no `val` split: carve one out of train ids


RAW_FORMATS = {
    "cuhk-pedes": RawFormat("cuhk-pedes", ("reid_raw.json",), "file_path"),
    "icfg-pedes": RawFormat("icfg-pedes", ("ICFG-PEDES.json", "ICFG_PEDES.json"), "file_path", carves_validation=True),
    "rstpreid": RawFormat("rstpreid", ("data_captions.json",), "img_path"),
}


@dataclass(frozen=True)
class RawRecord:
    """One validated annotation record: the image path relative to the root and its original id."""

    index: int
    split: str
    image_path: str
    source_id: int
    captions: list[str]


def find_annotation_file(root: str | os.PathLike, fmt: RawFormat) -> Path:
    """Returns the path of `fmt`'s annotation file under `root`; raises `DatasetFormatError` if none exists."""
    root = Path(root)
    for file_name in fmt.annotation_files:
        if (root / file_name).is_file():
            return root / file_name
    expected = " or ".join(str(root / f) for f in fmt.annotation_files)
    raise DatasetFormatError(f"{fmt.name}: annotation file not found: {expected}")


def read_json_records(path: Path) -> list:
    """Returns the top-level JSON list in `path`, decoding it record by record so that a syntax
    error names the index of the record where it happened."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise DatasetFormatError(f"{path}: not UTF-8 text (byte {err.start}, line {line}: {err.reason}); "
                                 "annotation files must be UTF-8 JSON") from None
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if not text.startswith("[", pos):
        raise DatasetFormatError(f"{path}: malformed JSON: expected a list of records at the top level")
    pos = _skip_ws(text, pos + 1)
    records: list = []
    if text.startswith("]", pos):
        return records
    while True:
        try:
            record, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise DatasetFormatError(
                f"{path}: malformed JSON in record {len(records)} (line {err.lineno}, column {err.colno}): {err.msg}"
            ) from None
        except RecursionError:
            raise DatasetFormatError(f"{path}: record {len(records)} nests lists or objects too deeply to be a record"
                                     ) from None
        records.append(record)
        pos = _skip_ws(text, pos)
        if text.startswith("]", pos):
            if _skip_ws(text, pos + 1) != len(text):
                raise DatasetFormatError(f"{path}: malformed JSON: unexpected data after the list of records")
            return records
        if not text.startswith(",", pos):
            line = text.count("\n", 0, pos) + 1
            raise DatasetFormatError(
                f"{path}: malformed JSON after record {len(records) - 1} (line {line}): expected ',' or ']'"
            )
        pos = _skip_ws(text, pos + 1)


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def parse_record(record: object, index: int, path: Path, fmt: RawFormat) -> RawRecord:
    """Returns the validated `RawRecord` for `record` (the `index`-th of `path`); raises
    `DatasetFormatError` naming the file, the record and the field on any schema violation."""
    where = f"{path}: record {index}"
    if not isinstance(record, dict):
        raise DatasetFormatError(f"{where}: expected an object, got {type(record).__name__}")
    for field in ("split", "captions", fmt.path_field, "id"):
        if field not in record:
            raise DatasetFormatError(f"{where}: missing field '{field}'")
    split = record["split"]
    if not isinstance(split, str) or split not in _SPLIT_NAMES:
        raise DatasetFormatError(f"{where}: field 'split' is {split!r}, expected one of {sorted(_SPLIT_NAMES)}")
    captions = record["captions"]
    if not isinstance(captions, list) or not captions:
        raise DatasetFormatError(f"{where}: field 'captions' must be a non-empty list of strings, got {captions!r}")
    for k, caption in enumerate(captions):
        if not has_visible_text(caption):
            raise DatasetFormatError(f"{where}: field 'captions[{k}]' is empty, invisible (only whitespace, control or "
                                     f"zero-width characters) or not a string: {caption!r}")
    image_path = record[fmt.path_field]
    if not isinstance(image_path, str) or not image_path:
        raise DatasetFormatError(f"{where}: field '{fmt.path_field}' must be a non-empty string, got {image_path!r}")
    inside = posixpath.normpath(f"{fmt.image_dir}/{image_path.replace(os.sep, '/')}")
    if posixpath.isabs(image_path) or not inside.startswith(f"{fmt.image_dir}/"):
        raise DatasetFormatError(f"{where}: field '{fmt.path_field}' is {image_path!r}, which points outside "
                                 f"{fmt.image_dir}/ of the dataset root; image paths must stay inside it")
    return RawRecord(
        index=index,
        split=_SPLIT_NAMES[split],
        image_path=inside,
        source_id=_parse_id(record["id"], where),
        captions=[c.strip() for c in captions],
    )


def _parse_id(value: object, where: str) -> int:
    """Returns `value` as an int; anything else cannot be mapped to contiguous pids."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        try:
            return int(value)
        except ValueError:  # digits int() does not read ("²"), or more than one sign
            pass
    raise DatasetFormatError(
        f"{where}: field 'id' is {value!r}, which is not an integer, so pids cannot be made contiguous"
    )


def image_file(root: Path, record: RawRecord, annotation: Path, fmt: RawFormat) -> Path:
    """The image file of `record` (read from `annotation`) resolved, symbolic links included; raises
    `DatasetFormatError` naming the file, the record and the field when it lies outside `root`."""
    try:
        return resolve_inside(root, record.image_path, "the dataset root")
    except OutsideRootError as error:
        raise DatasetFormatError(
            f"{annotation}: record {record.index}: field '{fmt.path_field}': image {error}; image files must lie "
            "inside the dataset root (keep the annotation file beside an imgs/ folder that lives elsewhere and "
            "read that folder instead)") from None


def image_problem(path: Path, verify: bool) -> str | None:
    """Returns why the image at `path` is unusable ("missing", "not decodable: ..."), or None if it is fine.

    With `verify`, PIL decodes the whole image (a header check alone lets a truncated JPEG through, to fail
    later when training reads the row).
    """
    if not path.is_file():
        return "missing"
    if verify:
        try:
            read_image(path)
        except ImageFileError as error:
            return f"not decodable ({error.reason})"
    return None


def carve_validation_ids(train_ids: list[int], validation_ids: int | float, seed: int) -> set[int]:
    """Returns the identities moved from train to validation: `validation_ids` of them (an int) or
    that fraction of the train identities (a float in (0, 1)), drawn by a seeded permutation of the
    sorted ids, so the same seed always gives the same split whatever the record order."""
    unique = np.array(sorted(set(train_ids)))
    if isinstance(validation_ids, float):
        if not 0.0 < validation_ids < 1.0:
            raise ValueError(f"validation_ids as a fraction must be in (0, 1), got {validation_ids}")
        count = max(1, round(validation_ids * len(unique)))
    else:
        count = int(validation_ids)
    if not 0 < count < len(unique):
        raise ValueError(f"cannot carve {count} validation identities out of {len(unique)} train identities")
    order = np.random.default_rng(seed).permutation(len(unique))
    return {int(i) for i in unique[order[:count]]}


def read_raw_dataset(
    name: str,
    root: str | os.PathLike,
    *,
    skip_bad_images: bool = False,
    verify_images: bool = True,
    validation_ids: int | float = 0.1,
    split_seed: int = 0,
) -> DatasetDict:
    """Returns the `DatasetDict` (train / validation / test) of benchmark `name` stored under `root`.

    Args:
        name: one of `RAW_FORMATS` ("cuhk-pedes", "icfg-pedes", "rstpreid").
        root: the folder holding the annotation file and `imgs/`.
        skip_bad_images: drop records whose image is missing or undecodable (and log how many)
            instead of raising `DatasetFormatError` on the first one. An image path that resolves
            outside `root` (through a symbolic link) is always refused, never skipped.
        verify_images: also check that every image decodes (a full PIL decode), not only that it exists.
        validation_ids: ICFG-PEDES only (it ships no validation split): the number (int) or fraction
            (float) of train identities moved to validation.
        split_seed: ICFG-PEDES only: the seed of that identity draw.

    Pids are remapped to 0..N-1 within each split, in the order of the original ids.
    """
    fmt = RAW_FORMATS[name]
    root = Path(root)
    path = find_annotation_file(root, fmt)
    records = [parse_record(r, i, path, fmt) for i, r in enumerate(read_json_records(path))]

    kept, problems = [], []
    for record in tqdm(records, desc=f"{name}: checking images", unit="img", disable=len(records) < 5000):
        problem = image_problem(image_file(root, record, path, fmt), verify_images)
        if problem is None:
            kept.append(record)
        elif skip_bad_images:
            problems.append(record)
        else:
            raise DatasetFormatError(
                f"{path}: record {record.index}: image {root / record.image_path} is {problem}"
                " (pass skip_bad_images=True to drop such records)"
            )
    if problems:
        logger.warning("%s: skipped %d records with a missing or undecodable image", name, len(problems))

    by_split = _group_by_split(kept, path)
    if fmt.carves_validation and not by_split["validation"]:
        try:
            moved = carve_validation_ids([r.source_id for r in by_split["train"]], validation_ids, split_seed)
        except ValueError as error:  # too few train identities in the file to carve a validation split from
            raise DatasetFormatError(f"{path}: no 'val' split, and {error}") from None
        by_split["validation"] = [r for r in by_split["train"] if r.source_id in moved]
        by_split["train"] = [r for r in by_split["train"] if r.source_id not in moved]
    for split, split_records in by_split.items():
        if not split_records:
            raise DatasetFormatError(f"{path}: no usable record in split '{split}'")

    dataset = DatasetDict({split: _to_dataset(rs, root) for split, rs in by_split.items()})
    logger.info(summarize(name, dataset))
    return dataset


def _group_by_split(records: list[RawRecord], path: Path) -> dict[str, list[RawRecord]]:
    """Returns the records of each split; raises if one original id appears in two splits."""
    by_split: dict[str, list[RawRecord]] = {"train": [], "validation": [], "test": []}
    first_of_id: dict[int, RawRecord] = {}
    for record in records:
        first = first_of_id.setdefault(record.source_id, record)
        if first.split != record.split:
            raise DatasetFormatError(
                f"{path}: record {record.index}: id {record.source_id} is in split '{record.split}' but record "
                f"{first.index} has it in split '{first.split}'; splits must be identity-disjoint"
            )
        by_split[record.split].append(record)
    return by_split


def _to_dataset(records: list[RawRecord], root: Path) -> Dataset:
    """Returns the split as a `Dataset` whose images are referenced by absolute path (decoded lazily)."""
    pid_of = {source_id: pid for pid, source_id in enumerate(sorted({r.source_id for r in records}))}
    return Dataset.from_dict(
        {
            "image": [str((root / r.image_path).resolve()) for r in records],
            "image_path": [r.image_path for r in records],
            "pid": [pid_of[r.source_id] for r in records],
            "captions": [r.captions for r in records],
        },
        features=FEATURES,
    )
