"""Any Hugging Face dataset as a TIReID dataset: a `save_to_disk` folder, a folder of Parquet shards (what
`tireid data prepare` writes, or a dataset repo laid out as on the Hub), a Hub dataset id, or a folder of
photos in the `imagefolder` layout. `datasets`' own loaders read them; `normalize_dataset` then checks and
converts every one of them to the zoo's row schema (`FEATURES`) the same way.

An `imagefolder` of captioned photos::

    photos/metadata.jsonl        {"file_name": "0001.jpg", "captions": ["a man in a red coat"], "pid": 7}
    photos/0001.jpg ...          (or metadata.csv with a `caption` column: one caption per image)

or with its splits in subfolders, as `imagefolder` reads them: ``photos/train/metadata.jsonl``,
``photos/validation/...``, ``photos/test/...``. Columns named otherwise are mapped with
``column_mapping={"caption": "description", "pid": "person_id"}`` (zoo name: your column).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from datasets import Dataset, DatasetDict, Image, LargeList, List, Value, load_dataset

from ..files import OutsideRootError, resolve_inside
from ..images import ImageFileError, read_image
from ..processing import has_visible_text
from .readers import carve_validation_ids
from .schema import FEATURES, SPLITS, DatasetFormatError

ZOO_COLUMNS = ("image", "image_path", "pid", "captions", "caption")
METADATA_FILES = ("metadata.jsonl", "metadata.csv")
DEFAULT_VALIDATION_FRACTION = 0.1
DEFAULT_TEST_FRACTION = 0.1
OPTIONS = ("validation_fraction", "test_fraction", "split_seed", "verify_images")  # of normalize_dataset
_STRING = ("string", "large_string")


class DatasetNotFound(DatasetFormatError):
    """``name_or_path`` is neither a folder nor a dataset `datasets.load_dataset` can read from the Hub."""


@dataclass(frozen=True)
class Source:
    """Where a dataset was read from: ``name`` as the user gave it, ``root`` (the local folder, None for a
    Hub id) and ``kind``: "save_to_disk", "parquet" (any folder `load_dataset` reads), "imagefolder" or "hub"."""

    name: str
    root: Path | None
    kind: str

    def where(self, image: dict | None = None) -> str:
        """The file a row comes from: for an imagefolder, the metadata file nearest above the row's ``image``
        (``{"path", "bytes"}``), as `imagefolder` pairs them; otherwise the folder or Hub id."""
        if self.kind == "imagefolder" and image and image.get("path"):
            folder = Path(image["path"]).parent
            while folder != self.root and self.root in folder.parents:
                found = [folder / name for name in METADATA_FILES if (folder / name).is_file()]
                if found:
                    return str(found[0])
                folder = folder.parent
            found = [self.root / name for name in METADATA_FILES if (self.root / name).is_file()]
            if found:
                return str(found[0])
        return self.name


def parse_column_mapping(value: str | dict | None, argument: str = "column_mapping") -> dict[str, str]:
    """Returns ``{zoo column: dataset column}`` from ``"caption=description,pid=person_id"`` or a mapping.

    Zoo columns are `ZOO_COLUMNS`; ``caption`` names a column of one string per image, ``captions`` one of
    lists of strings. Raises ValueError naming ``argument`` on a malformed pair or an unknown zoo column."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        pairs = {}
        for pair in value.split(","):
            key, sep, column = (part.strip() for part in pair.partition("="))
            if not sep or not key or not column:
                raise ValueError(f"{argument} expects ZOO_COLUMN=YOUR_COLUMN pairs separated by commas "
                                 f"(e.g. caption=description,pid=person_id), got {pair!r}")
            pairs[key] = column
        value = pairs
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"{argument} must map zoo column names to column names, got {value!r}")
    unknown = sorted(set(value) - set(ZOO_COLUMNS))
    if unknown:
        raise ValueError(f"{argument}: unknown zoo column(s) {unknown}; the zoo's columns are {list(ZOO_COLUMNS)}")
    if "caption" in value and "captions" in value:
        raise ValueError(f"{argument}: map either caption (one string per image) or captions (a list), not both")
    return dict(value)


def read_hf_dataset(name_or_path: str | os.PathLike) -> tuple[DatasetDict, Source]:
    """Reads ``name_or_path`` with `datasets`' own loaders and returns it with its `Source`.

    An existing folder is read by ``load_dataset("arrow", data_files=...)`` over the Arrow files that
    `save_to_disk` wrote (``dataset_dict.json`` naming the splits, or ``state.json`` for a single split,
    which becomes ``train``): unlike `load_from_disk`, whose later `map` calls cache into the folder itself,
    nothing is ever written into an input folder. Otherwise it is read by ``load_dataset("imagefolder",
    data_dir=...)`` when it holds ``metadata.jsonl``/``metadata.csv`` at its top or in a split subfolder,
    and by ``load_dataset(folder)`` otherwise (Parquet shards, a prepared folder, a Hub-layout repo);
    anything else is a Hub dataset id, read by ``load_dataset(id)``.
    """
    path = Path(name_or_path)
    if path.is_dir():
        root = path.resolve()
        if (root / "dataset_dict.json").is_file() or (root / "state.json").is_file():
            kind, loader = "save_to_disk", "load_dataset('arrow')"
            read = lambda: load_dataset("arrow", data_files=_saved_arrow_files(root))  # noqa: E731
        elif any((folder / name).is_file() for folder in (root, *root.iterdir()) for name in METADATA_FILES):
            kind, loader = "imagefolder", "load_dataset('imagefolder')"
            _check_metadata_not_empty(root)
            read = lambda: load_dataset("imagefolder", data_dir=str(root))  # noqa: E731
        else:
            kind, loader, read = "parquet", "load_dataset", lambda: load_dataset(str(root))
        try:
            dataset = read()
        except Exception as error:  # anything datasets' parsers raise on a user's folder is about that folder
            first_line = (str(error).splitlines() or [""])[0]
            raise DatasetFormatError(f"{path}: datasets.{loader} cannot read it: {first_line or type(error).__name__}"
                                     ) from error
        source = Source(str(path), root, kind)
        return dataset, source
    try:
        return load_dataset(str(name_or_path)), Source(str(name_or_path), None, "hub")
    except (OSError, ValueError) as error:  # offline, no such repo (DatasetNotFoundError is a FileNotFoundError)
        raise DatasetNotFound(f"not a local folder, and datasets.load_dataset cannot read it as a Hub dataset id "
                              f"({str(error).splitlines()[0]})") from None


def _check_metadata_not_empty(root: Path) -> None:
    """Refuses, naming it, a metadata file of an imagefolder with no row (`imagefolder` fails on it with an
    IndexError): a ``metadata.jsonl`` without a non-blank line, a ``metadata.csv`` without a line after its header."""
    for folder in (root, *(child for child in root.iterdir() if child.is_dir())):
        for name in METADATA_FILES:
            file = folder / name
            if file.is_file():
                lines = [line for line in file.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
                if len(lines) < (2 if name.endswith(".csv") else 1):
                    raise DatasetFormatError(f"{file}: no rows (one line per photo: file_name, captions or caption, pid)")


def _saved_arrow_files(root: Path) -> dict[str, list[str]]:
    """``{split: Arrow files}`` of a `save_to_disk` folder, as its ``state.json`` files list them."""
    if (root / "dataset_dict.json").is_file():
        splits = {split: root / split for split in json.loads((root / "dataset_dict.json").read_text())["splits"]}
    else:
        splits = {"train": root}
    return {split: [str(folder / entry["filename"]) for entry in json.loads((folder / "state.json").read_text())
                    ["_data_files"]] for split, folder in splits.items()}


def normalize_dataset(
    dataset: DatasetDict,
    source: Source,
    *,
    column_mapping: str | dict | None = None,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    split_seed: int = 0,
    verify_images: bool = True,
) -> DatasetDict:
    """Returns ``dataset`` as the zoo's train / validation / test splits with exactly the columns `FEATURES`.

    Per split: ``column_mapping`` (see `parse_column_mapping`) renames the dataset's columns to the zoo's;
    ``image`` must be an `Image` column, ``pid`` an integer column, and exactly one of ``captions`` (lists of
    strings) or ``caption`` (one string, which becomes ``[caption]``). Every row must have a pid, at least one
    caption with visible text and, with ``verify_images``, an image that decodes; an image read from a file of
    a local folder must resolve (symlinks included) inside that folder. ``image_path`` is kept when the
    dataset has it, else it is the image file's path relative to the folder (its name for a Hub dataset, or
    ``<split>/<row>`` for an image without a file name).

    A dataset with exactly the zoo's columns and no mapping (what `save_to_disk` of a zoo dataset and `tireid
    data prepare` write) numbers identities within each split, as the zoo does; any other dataset numbers
    them across splits, and a pid in two splits is refused (splits must be identity-disjoint).

    When ``validation`` or ``test`` is missing, it is carved out of train by identity:
    ``max(1, round(fraction x N))`` of the N train identities each (test first, then validation from the
    rest), drawn with ``split_seed`` as `carve_validation_ids` draws them. Pids are then remapped to 0..P-1
    within each split in the order of the original ids, as the raw readers do.

    Raises `DatasetFormatError` naming the file (the metadata file of an imagefolder, else the folder or
    Hub id), the split, the row and the column.
    """
    mapping = parse_column_mapping(column_mapping)
    unknown = sorted(set(dataset) - set(SPLITS))
    if unknown:
        raise DatasetFormatError(f"{source.name}: split(s) {unknown} are not among {list(SPLITS)}; name the "
                                 "splits train / validation / test (folders or data files)")
    if "train" not in dataset:
        raise DatasetFormatError(f"{source.name}: no 'train' split (it has {sorted(dataset)})")
    checked = {split: _checked_split(dataset[split], split, source, mapping, verify_images)
               for split in SPLITS if split in dataset}
    if any(set(dataset[split].column_names) != set(FEATURES) for split in checked) or mapping:
        _check_identity_disjoint(checked, source)
    rows_of = _carve(checked, source, validation_fraction, test_fraction, split_seed)

    out = {}
    for origin, split_columns in checked.items():
        ds, pids, captions, image_paths = split_columns
        destination_pid = [0] * len(pids)
        for split, (from_split, rows) in rows_of.items():
            if from_split == origin:
                pid_of = {p: k for k, p in enumerate(sorted({pids[row] for row in rows}))}
                for row in rows:
                    destination_pid[row] = pid_of[pids[row]]
        full = (ds.select_columns(["image"])
                .add_column("image_path", image_paths, feature=FEATURES["image_path"])
                .add_column("pid", destination_pid, feature=FEATURES["pid"])
                .add_column("captions", captions, feature=FEATURES["captions"]))
        for split, (from_split, rows) in rows_of.items():
            if from_split == origin:
                out[split] = full if len(rows) == full.num_rows else full.select(rows)
    return DatasetDict({split: out[split] for split in SPLITS})


def _checked_split(ds: Dataset, split: str, source: Source, mapping: dict, verify_images: bool):
    """Returns ``(ds with the zoo's column names, original pids, captions, image paths)`` of one split."""
    for zoo, column in mapping.items():
        if column not in ds.column_names:
            raise DatasetFormatError(f"{source.where(_first_image(ds))}: split '{split}': column_mapping "
                                     f"{zoo}={column}: no column '{column}' (columns: {ds.column_names})")
        if zoo != column and zoo in ds.column_names:
            raise DatasetFormatError(f"{source.where(_first_image(ds))}: split '{split}': column_mapping "
                                     f"{zoo}={column}, but the dataset has a column '{zoo}' too; rename one")
    ds = ds.rename_columns({column: zoo for zoo, column in mapping.items() if column != zoo})
    where = source.where(_first_image(ds))
    caption_columns = [c for c in ("captions", "caption") if c in ds.column_names]
    if len(caption_columns) != 1:
        found = "both 'captions' and 'caption'" if caption_columns else "no caption column"
        raise DatasetFormatError(f"{where}: split '{split}': {found}; expected 'captions' (a list of strings per "
                                 "image) or 'caption' (one string), or map yours with column_mapping "
                                 f"caption=<column> (columns: {ds.column_names})")
    caption_column = caption_columns[0]
    _check_feature(ds, "image", lambda f: isinstance(f, Image), "images (an Image column)", where, split, mapping)
    _check_feature(ds, "pid", lambda f: isinstance(f, Value) and pa.types.is_integer(f.pa_type),
                   "integers (the identity)", where, split, mapping)
    if caption_column == "captions":
        _check_feature(ds, "captions", lambda f: isinstance(f, (List, LargeList)) and isinstance(f.feature, Value)
                       and f.feature.dtype in _STRING, "lists of strings", where, split, mapping)
    else:
        _check_feature(ds, "caption", lambda f: isinstance(f, Value) and f.dtype in _STRING, "strings", where, split,
                       mapping)

    has_paths = "image_path" in ds.column_names
    if has_paths:
        _check_feature(ds, "image_path", lambda f: isinstance(f, Value) and f.dtype in _STRING, "strings", where,
                       split, mapping)
    columns = ["image", "pid", caption_column] + (["image_path"] if has_paths else [])
    view = ds.select_columns(columns).cast_column("image", Image(decode=False))
    pids, captions, image_paths = [], [], []
    try:  # Parquet does not check that its string cells are UTF-8: reading them does
        for batch in view.iter(batch_size=256):
            for k, image in enumerate(batch["image"]):
                row = len(pids)
                texts = batch[caption_column][k]
                texts = [texts] if caption_column == "caption" else texts
                problem = _row_problem(image, batch["pid"][k], texts, caption_column, mapping, source, verify_images)
                if problem:
                    raise DatasetFormatError(f"{source.where(image)}: split '{split}', row {row}: {problem}")
                pids.append(int(batch["pid"][k]))
                captions.append([text.strip() for text in texts])
                image_paths.append(batch["image_path"][k] if has_paths else _image_path(image, source, split, row))
    except UnicodeDecodeError as error:
        raise DatasetFormatError(f"{where}: split '{split}', at row {len(pids)}: a text column holds bytes that are "
                                 f"not UTF-8 ({error.reason}); the file is damaged") from None
    if not pids:
        raise DatasetFormatError(f"{where}: split '{split}' has no rows")
    return ds, pids, captions, image_paths


def _row_problem(image: dict | None, pid, texts: list, caption_column: str, mapping: dict, source: Source,
                 verify_images: bool) -> str | None:
    """What is wrong with one row (``column ...: why``), or None."""
    if pid is None:
        return f"column {_named('pid', mapping)} is empty; every image needs an identity"
    if not texts:
        return f"column {_named(caption_column, mapping)} has no caption"
    for c, text in enumerate(texts):
        if not has_visible_text(text):
            index = f" (caption {c})" if caption_column == "captions" else ""
            return (f"column {_named(caption_column, mapping)}{index} is empty, invisible (only whitespace, control "
                    f"or zero-width characters) or null: {text!r}")
    problem = _image_problem(image, source, verify_images)
    return f"column {_named('image', mapping)}: {problem}" if problem else None


def _named(column: str, mapping: dict) -> str:
    """Zoo column ``column`` as the dataset names it: ``'pid'``, or ``'person_id' (mapped to 'pid')``."""
    if mapping.get(column, column) != column:
        return f"'{mapping[column]}' (mapped to '{column}')"
    return f"'{column}'"


def _check_feature(ds: Dataset, column: str, accepts, expected: str, where: str, split: str, mapping: dict) -> None:
    if column not in ds.column_names:
        raise DatasetFormatError(f"{where}: split '{split}': no column '{column}' (columns: {ds.column_names}); "
                                 f"map yours with column_mapping {column}=<column>")
    if not accepts(ds.features[column]):
        raise DatasetFormatError(f"{where}: split '{split}': column {_named(column, mapping)} holds "
                                 f"{ds.features[column]}, expected {expected}")


def _first_image(ds: Dataset) -> dict | None:
    """Row 0's ``image`` as ``{"path", "bytes"}`` (what `Source.where` needs), None without such a column."""
    if "image" not in ds.column_names or not isinstance(ds.features["image"], Image) or ds.num_rows == 0:
        return None
    return ds.select_columns(["image"]).cast_column("image", Image(decode=False))[0]["image"]


def _image_problem(image: dict | None, source: Source, verify: bool) -> str | None:
    """Why ``image`` (``{"path", "bytes"}``) is unusable, or None: no image, a file outside the dataset's
    folder, or (with ``verify``) a file or bytes that `datasets.Image` cannot decode."""
    if image is None or (image.get("bytes") is None and not image.get("path")):
        return "no image"
    if image.get("bytes") is None and source.root is not None:
        try:
            resolve_inside(source.root, image["path"], "the dataset folder")
        except OutsideRootError as error:
            return f"image {error}"
    if verify:
        name = image.get("path") or "embedded bytes"
        try:
            read_image(image["path"] if image.get("bytes") is None else io.BytesIO(image["bytes"]), name)
        except ImageFileError as error:
            return f"image {name} does not decode ({error.reason})"
    return None


def _image_path(image: dict, source: Source, split: str, row: int) -> str:
    """The image's file relative to the dataset folder, its file name, or ``<split>/<row>`` without one."""
    path = image.get("path")
    if not path:
        return f"{split}/{row}"
    if source.root is not None and image.get("bytes") is None:
        return Path(path).resolve().relative_to(source.root).as_posix()
    return Path(path).name


def _check_identity_disjoint(checked: dict, source: Source) -> None:
    """Raises naming both rows when one original pid is in two splits."""
    first: dict[int, tuple[str, int]] = {}
    for split, (ds, pids, _, _) in checked.items():
        seen = {}
        for row, pid in enumerate(pids):
            seen.setdefault(pid, row)
        for pid, row in seen.items():
            if pid in first:
                other_split, other_row = first[pid]
                where = source.where(_row_image(ds, row))
                raise DatasetFormatError(f"{where}: split '{split}', row {row}: column 'pid' is {pid}, which split "
                                         f"'{other_split}' has too (row {other_row}); splits must be identity-disjoint")
            first[pid] = (split, row)


def _row_image(ds: Dataset, row: int) -> dict:
    return ds.select_columns(["image"]).cast_column("image", Image(decode=False))[row]["image"]


def _carve(checked: dict, source: Source, validation_fraction: float, test_fraction: float,
           seed: int) -> dict[str, tuple[str, list[int]]]:
    """Returns, per output split, ``(the split its rows come from, their row indices)``; a missing
    validation / test split takes its identities from train."""
    rows_of = {split: (split, list(range(len(columns[1])))) for split, columns in checked.items()}
    missing = [split for split in ("test", "validation") if split not in checked]
    if not missing:
        return rows_of
    fractions = {"validation": validation_fraction, "test": test_fraction}
    train_pids = checked["train"][1]
    num_ids = len(set(train_pids))
    counts = {}
    for split in missing:
        if not 0.0 < fractions[split] < 1.0:
            raise ValueError(f"{split}_fraction must be in (0, 1), got {fractions[split]}")
        counts[split] = max(1, round(fractions[split] * num_ids))
    if sum(counts.values()) >= num_ids:
        raise DatasetFormatError(f"{source.name}: split 'train' has {num_ids} identities, too few to carve "
                                 + " and ".join(f"{n} {s}" for s, n in counts.items()) + " identities out of it")
    remaining = list(train_pids)
    for split in missing:
        moved = carve_validation_ids(remaining, counts[split], seed)
        rows_of[split] = ("train", [row for row, pid in enumerate(train_pids) if pid in moved])
        remaining = [pid for pid in remaining if pid not in moved]
    kept = set(remaining)
    rows_of["train"] = ("train", [row for row, pid in enumerate(train_pids) if pid in kept])
    return rows_of
