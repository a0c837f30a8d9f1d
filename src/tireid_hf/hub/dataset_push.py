"""Upload a folder written by `tireid data prepare` to a Hugging Face Hub dataset repository."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

from huggingface_hub import DatasetCard, HfApi

from ..data import REDISTRIBUTION_RESTRICTED
from ..files import atomic_directory
from .upload import upload_folder


def push_dataset(data_dir: str | os.PathLike, repo_id: str, *, private: bool = True, token: str | None = None,
                 api: HfApi | None = None) -> str:
    """Uploads the prepared dataset in `data_dir` to the dataset repo `repo_id` and returns its URL.

    The repo is created private unless `private=False`. The benchmarks in
    `REDISTRIBUTION_RESTRICTED` (CUHK-PEDES, ICFG-PEDES, RSTPReid) are released on request only:
    pushing one always warns, and pushing one publicly warns loudly.
    """
    data_dir = _prepared_folder(data_dir)
    name = DatasetCard.load(data_dir / "README.md").data.to_dict().get("tireid_dataset")
    if name in REDISTRIBUTION_RESTRICTED:
        visibility = "PUBLIC" if not private else "private"
        warnings.warn(
            f"{name} may not be redistributed publicly without its owners' permission; pushing it to a "
            f"{visibility} repository ({repo_id}). Keep the repository private to your organisation.",
            UserWarning,
            stacklevel=2,
        )
    return upload_folder(data_dir, repo_id, repo_type="dataset", private=private, api=api, token=token,
                         commit_message="Upload dataset prepared with tireid-hf")


def write_dataset_folder(data_dir: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Writes the folder `push_dataset` would upload (the prepared `data_dir`, copied whole) to `out`."""
    data_dir = _prepared_folder(data_dir)
    with atomic_directory(out, overwrite=overwrite) as folder:
        shutil.copytree(data_dir, folder, dirs_exist_ok=True)
    return Path(out)


def _prepared_folder(data_dir: str | os.PathLike) -> Path:
    data_dir = Path(data_dir)
    if not (data_dir / "README.md").is_file() or not (data_dir / "data").is_dir():
        raise FileNotFoundError(f"{data_dir} is not a prepared dataset (expected README.md and data/): run `tireid data prepare`")
    return data_dir
