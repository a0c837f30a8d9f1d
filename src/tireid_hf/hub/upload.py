"""The one way tireid-hf uploads a folder to the Hub: create the repo if needed, then one commit.

Used by `tireid push` (models), `tireid data push` (datasets) and `tireid push-metric` (the metric
Space). Without a network (``HF_HUB_OFFLINE=1``) or a token it fails at once with one sentence, instead
of the client's offline exception or its ~25 s of connection retries.
"""

from __future__ import annotations

import os

from huggingface_hub import HfApi, constants, get_token
from huggingface_hub.utils import HFValidationError, validate_repo_id

from ..errors import TIReIDError

REPO_URL_PREFIX = {"model": "https://huggingface.co/", "dataset": "https://huggingface.co/datasets/",
                   "space": "https://huggingface.co/spaces/"}


class HubUploadError(TIReIDError, RuntimeError):
    """The upload cannot start (offline, or no token); the message says why and what to do."""


def check_repo_id(repo_id: str, argument: str = "repo_id") -> None:
    """Raises a ValueError naming ``argument`` when ``repo_id`` is not a valid Hub repo id (``org/name``
    or ``name``: letters, digits, ``-``, ``_``, ``.``; at most 96 characters) — before any work."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"{argument} {repo_id!r} is not a valid Hub repo id (org/name): {error}") from None


def hub_api(token: str | None = None) -> HfApi:
    """An `HfApi` that can upload: refuses offline mode and a missing token before any request."""
    if constants.is_offline_mode():
        raise HubUploadError("Cannot push: the Hugging Face Hub is unreachable in offline mode (HF_HUB_OFFLINE=1); "
                             "unset HF_HUB_OFFLINE on a machine with network access, or use --dry-run OUT.")
    token = token or get_token()
    if not token:
        raise HubUploadError("Cannot push: no Hugging Face token found; run `hf auth login`, set HF_TOKEN or "
                             "pass --token.")
    return HfApi(token=token)


def upload_folder(folder: str | os.PathLike, repo_id: str, *, repo_type: str, private: bool, commit_message: str,
                  api: HfApi | None = None, token: str | None = None, space_sdk: str | None = None) -> str:
    """Creates `repo_id` (of `repo_type`: model, dataset or space) if needed, uploads `folder` as one
    commit and returns the repo URL. `api` replaces the real client (tests pass a fake one)."""
    api = api or hub_api(token)
    create_options = dict(repo_type=repo_type, private=private, exist_ok=True)
    if repo_type == "space":
        create_options["space_sdk"] = space_sdk or "gradio"
    api.create_repo(repo_id, **create_options)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type, commit_message=commit_message)
    return REPO_URL_PREFIX[repo_type] + repo_id
