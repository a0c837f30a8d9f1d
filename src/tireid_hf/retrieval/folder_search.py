"""Search a plain folder of photos by text: the folder's :class:`GalleryIndex`, kept up to date on disk.

The gallery is every ``.jpg`` / ``.jpeg`` / ``.png`` / ``.webp`` file under the folder (recursively, any
letter case; no annotation). Its embeddings are kept in a GalleryIndex folder (by default
``<folder>/.tireid-index``) whose ids are the files' paths relative to the photo folder, beside
``files.json``: each file's ``[size, mtime_ns]`` when it was embedded. The next call embeds only the
files that are new or whose size or modification time changed, drops the deleted ones and reuses the
rest; the index folder is replaced as a whole (:func:`~tireid_hf.files.atomic_directory`), so a kill
leaves the previous index or the new one. An index built by another model is rebuilt. A file that does
not decode as an image (:func:`~tireid_hf.images.read_image`: damaged, or a decompression bomb), or that is a
link resolving outside the folder (:func:`~tireid_hf.files.resolve_inside`), is reported (a
``warnings.warn`` naming it, and in ``FolderIndex.skipped``) and
left out, and tried again on the next call.

>>> folder = update_folder_index(model, processor, "photos/")                     # doctest: +SKIP
>>> ranked = search_folder(folder, ["a man in a red jacket"], k=10, min_score="model")   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..files import OutsideRootError, atomic_directory, finish_replacement, refuse_overlap, resolve_inside, writer_lock
from ..images import ImageFileError, read_image
from ..validation import IndexFormatError, read_json
from .embedding import embed_images, model_fingerprint
from .index import METADATA_FILE, GalleryIndex

__all__ = ["FILES_FILE", "IMAGE_SUFFIXES", "INDEX_FOLDER_NAME", "FolderIndex", "image_files", "read_queries",
           "search_folder", "search_report", "update_folder_index"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
INDEX_FOLDER_NAME = ".tireid-index"
FILES_FILE = "files.json"


@dataclass
class FolderIndex:
    """A photo folder's index after :func:`update_folder_index`.

    Attributes:
        index: the GalleryIndex of the readable photos (ids: paths relative to ``folder``, POSIX style),
            with the model and processor attached (it searches by text).
        folder: the photo folder; location: the index folder.
        embedded: the files embedded by this call (new or changed), relative paths.
        reused: how many stored embeddings this call reused.
        removed: the files of the stored index that are gone from the folder.
        skipped: ``(relative path, reason)`` of each file that could not be read as an image.
    """

    index: GalleryIndex | None
    folder: Path
    location: Path
    embedded: list[str] = field(default_factory=list)
    reused: int = 0
    removed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def image_files(folder: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """``{relative POSIX path: (size in bytes, mtime in ns)}`` of every image file under ``folder``
    (suffix in :data:`IMAGE_SUFFIXES`, any case, recursively), sorted by path."""
    folder = Path(folder)
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            stat = path.stat()
            found[path.relative_to(folder).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return found


def _stored(location: Path, model, processor) -> tuple[GalleryIndex | None, dict]:
    """The index stored in ``location`` and its ``files.json`` (a JSON object mapping each of the index's
    ids to ``[size, mtime_ns]``, two whole numbers >= 0); ``(None, {})`` where there is none, or it was
    built by another model, or either cannot be read (a warning says which)."""
    if not (location / METADATA_FILE).is_file():
        return None, {}
    try:
        index = GalleryIndex.load(location, model=model, processor=processor)
        keys = read_json(location / FILES_FILE, IndexFormatError, what=None)
        if not isinstance(keys, dict) or set(keys) != set(index.ids):
            raise IndexFormatError(f"{location / FILES_FILE} does not list the index's {len(index)} files")
        if not all(isinstance(key, list) and len(key) == 2 and all(type(number) is int and number >= 0 for number in key)
                   for key in keys.values()):
            raise IndexFormatError(f"{location / FILES_FILE}: each file must map to [size, mtime_ns], two whole numbers >= 0")
    except (OSError, ValueError) as error:
        warnings.warn(f"{location}: the stored index is not reused, every image is embedded again ({error})", stacklevel=3)
        return None, {}
    return index, {path: tuple(key) for path, key in keys.items()}


def update_folder_index(model, processor, folder: str | os.PathLike, index_dir: str | os.PathLike | None = None, *,
                        batch_size: int = 64, show_progress: bool = True) -> FolderIndex:
    """Bring the index of the photo ``folder`` up to date and return it (see the module docstring).

    Args:
        model, processor: the tireid model (its ``get_image_features``) and processor that embed the photos.
        folder: the photo folder; ``FileNotFoundError`` / ``NotADirectoryError`` naming it otherwise.
        index_dir: the index folder (default ``folder/.tireid-index``); written only when something changed.
        batch_size: images embedded at a time (no more are held in memory at once).
        show_progress: a tqdm bar over the images being embedded.

    The index's rows are the readable files in path order; ``FolderIndex.index`` is None when the folder
    holds no readable image (nothing is written then). The whole update, from reading the stored index to
    writing the new one, holds the index folder's writer lock: another process updating it is refused
    (:class:`~tireid_hf.files.FolderInUseError`). An index folder that is or contains the photo folder, or
    is, contains or lies inside the model's folder, is refused before anything is read
    (:func:`~tireid_hf.files.refuse_overlap`).
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"--images {folder}: no such folder")
    if not folder.is_dir():
        raise NotADirectoryError(f"--images {folder}: not a folder")
    location = Path(index_dir) if index_dir is not None else folder / INDEX_FOLDER_NAME
    refuse_overlap(location, "--index", {"--images": folder, "--model": getattr(model, "name_or_path", None)},
                   may_lie_inside=("--images",))
    with writer_lock(location):
        finish_replacement(location)
        return _update_folder_index(model, processor, folder, location, batch_size, show_progress)


def _update_folder_index(model, processor, folder: Path, location: Path, batch_size: int,
                         show_progress: bool) -> FolderIndex:
    files = image_files(folder)
    stored, stored_keys = _stored(location, model, processor)
    result = FolderIndex(None, folder, location, removed=sorted(set(stored_keys) - set(files)))
    fresh = [path for path, key in files.items() if stored_keys.get(path) != key]
    new_embeds, fresh_keys = {}, {}
    bar = tqdm(total=len(fresh), desc="embedding images", unit="image", disable=not show_progress or not fresh)
    for start in range(0, len(fresh), batch_size):
        chunk, images, names = fresh[start:start + batch_size], [], []
        for name in chunk:
            try:
                images.append(read_image(resolve_inside(folder, name, "the photo folder")))
                names.append(name)
            except (ImageFileError, OutsideRootError) as error:
                reason = error.reason if isinstance(error, ImageFileError) else str(error)
                result.skipped.append((name, reason))
                warnings.warn(f"{folder / name}: not a readable image, skipped ({reason})", stacklevel=2)
        if images:
            embeds = embed_images(model, processor, images, batch_size=batch_size, show_progress=False)
            new_embeds.update(zip(names, embeds))
            fresh_keys.update((name, files[name]) for name in names)
        bar.update(len(chunk))
    bar.close()
    result.embedded = sorted(new_embeds)
    unchanged = set(files) - set(fresh)
    ids = [path for path in files if path in new_embeds or path in unchanged]
    result.reused = len(unchanged)
    if not ids:
        return result
    if stored is not None and ids == stored.ids and not new_embeds:
        result.index = stored
        return result
    stored_row = {path: row for row, path in enumerate(stored.ids)} if stored is not None else {}
    embeddings = torch.stack([new_embeds[path] if path in new_embeds else stored.embeddings[stored_row[path]].clone()
                              for path in ids])
    index = GalleryIndex(embeddings, ids, fingerprint=model_fingerprint(model),
                         model_name_or_path=getattr(model, "name_or_path", None))
    keys = {path: list(fresh_keys.get(path) or stored_keys[path]) for path in ids}
    with atomic_directory(location, overwrite=True) as temporary:
        index.save(temporary)
        (temporary / FILES_FILE).write_text(json.dumps(keys, indent=1), encoding="utf-8")
    index.model, index.processor = model, processor
    result.index = index
    return result


def read_queries(texts: list[str], queries_file: str | os.PathLike | None) -> list[str]:
    """The queries: ``texts`` then each non-blank line of ``queries_file`` (UTF-8), stripped;
    ``ValueError`` naming the file or the argument when there is none or one is blank."""
    queries = []
    for text in texts:
        if not text.strip():
            raise ValueError("--text: a query is empty")
        queries.append(text.strip())
    if queries_file is not None:
        path = Path(queries_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"--queries {path}: cannot be read as UTF-8 text ({error})") from None
        from_file = [line.strip() for line in lines if line.strip()]
        if not from_file:
            raise ValueError(f"--queries {path}: holds no query (one query per line)")
        queries += from_file
    if not queries:
        raise ValueError("no query: give --text TEXT (repeatable) or --queries FILE (one query per line)")
    return queries


def search_folder(folder_index: FolderIndex, queries: list[str], k: int = 10,
                  min_score: float | str | None = None) -> list[list[tuple[str, float]]]:
    """Each query's top-``k`` photos as ``(relative path, score)``, best first, those scoring below
    ``min_score`` left out (see :meth:`GalleryIndex.search`); every list is empty when the folder
    holds no readable image."""
    if folder_index.index is None:
        return [[] for _ in queries]
    results = folder_index.index.search(queries, k=k, min_score=min_score)
    return [[(path, score) for _, score, path in results.hits(row)] for row in range(len(queries))]


def search_report(folder_index: FolderIndex, queries: list[str], ranked: list[list[tuple[str, float]]], *,
                  model: str, k: int, min_score: float | None) -> dict:
    """What ``tireid search --out ranked.json`` writes: the model, the folder, the index folder, ``k``,
    ``min_score`` (None: no cut), ``num_images`` (indexed), ``skipped`` (``{"path", "error"}`` per unreadable
    file) and ``queries``: per query its ``text`` and ``results``, the ``{"path", "score"}`` of its top-k
    (paths as the folder was given joined with the relative path; ``[]``: no match)."""
    return {
        "model": model,
        "images": str(folder_index.folder),
        "index": str(folder_index.location),
        "k": k,
        "min_score": min_score,
        "num_images": 0 if folder_index.index is None else len(folder_index.index),
        "skipped": [{"path": str(folder_index.folder / path), "error": error} for path, error in folder_index.skipped],
        "queries": [{"text": text, "results": [{"path": str(folder_index.folder / path), "score": score}
                                                for path, score in hits]}
                    for text, hits in zip(queries, ranked)],
    }
