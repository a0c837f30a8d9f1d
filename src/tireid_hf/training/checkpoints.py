"""Resumable checkpoints: Accelerate's state + where the run stood, written atomically and checked
before a resume (every file's size and SHA-256 are recorded when it is written)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TIReIDInputError
from ..files import give_usual_permissions, sha256_of_file
from ..faults import kill_point

PROGRESS_FILE = "progress.json"
MANIFEST_FILE = "checkpoint_files.json"
_PREFIX = "checkpoint-"
_DELETING = ".deleting"


class CheckpointError(TIReIDInputError):
    """A checkpoint cannot be resumed from; the message names the file and what to do."""


@dataclass
class TrainingProgress:
    """Where a run stands, saved in every checkpoint so a resumed run continues exactly there.

    ``epoch`` / ``batch_in_epoch`` / ``stage_step`` count within the current stage; ``global_step``
    over the whole run. ``best`` holds the best validation record, ``history`` every train log and
    validation, ``scheduler_state`` the learning-rate schedule's state, ``loss_window`` the losses of
    the next train log (so a resumed run logs the same means as an uninterrupted one),
    ``backbone_gradient_norms`` the gradient norms each loss term sent into the backbone at the steps
    that measured them.

    The schedule's and the sampler's state live here, in JSON, rather than in Accelerate's
    ``register_for_checkpointing``: Accelerate pickles those objects and unpickles them with
    ``weights_only=False`` (tests/test_training_parts.py::test_accelerate_custom_checkpoints_unpickle_anything),
    and nothing here loads a pickle that is not weights-only; it also keeps the checkpoints of earlier runs resumable.
    """

    method: str
    stage_index: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    stage_step: int = 0
    global_step: int = 0
    best: dict | None = None
    history: list = field(default_factory=list)
    scheduler_state: dict | None = None
    train_runtime_seconds: float = 0.0  # training time of every process up to this checkpoint
    loss_window: dict = field(default_factory=dict)  # losses of the batches since the last train log
    model_config: dict | None = None  # the model's config as the run built it (see check_model_config)
    backbone_gradient_norms: list = field(default_factory=list)  # records of loop._record_backbone_gradients

    def __post_init__(self):
        self.start_clock()

    def start_clock(self) -> None:
        """From now on, :meth:`update_runtime` adds this process' time to ``train_runtime_seconds``."""
        self._clock_origin = time.perf_counter() - self.train_runtime_seconds

    def update_runtime(self) -> None:
        """``train_runtime_seconds`` = time of the processes before this one (up to the checkpoint they
        resumed from) + this process' time since :meth:`start_clock`."""
        self.train_runtime_seconds = time.perf_counter() - self._clock_origin

    def start_stage(self, stage_index: int) -> None:
        self.stage_index, self.epoch, self.batch_in_epoch, self.stage_step = stage_index, 0, 0, 0
        self.scheduler_state = None

    def sampler_epoch(self) -> int:
        """Epoch number given to the sampler: distinct across stages, so each stage sees new orders."""
        return self.stage_index * 1_000_000 + self.epoch

    def end_epoch(self) -> None:
        self.epoch += 1
        self.batch_in_epoch = 0

    def record_train(self, logs: dict) -> None:
        self.history.append({"kind": "train", "stage": self.stage_index, "epoch": self.epoch,
                             "step": self.global_step, **logs})

    def record_validation(self, metrics: dict, key: str, consider_for_best: bool) -> bool:
        """Adds a validation record; returns whether it is the new best (when considered)."""
        record = {"kind": "validation", "stage": self.stage_index, "epoch": self.epoch,
                  "step": self.global_step, "metrics": metrics}
        self.history.append(record)
        if consider_for_best and (self.best is None or metrics[key] > self.best["metrics"][key]):
            self.best = record
            return True
        return False

    def last_train_loss(self) -> float:
        losses = [entry["train/loss"] for entry in self.history if entry["kind"] == "train"]
        return losses[-1] if losses else math.nan

    def save(self, folder: Path) -> None:
        (folder / PROGRESS_FILE).write_text(json.dumps(dataclasses.asdict(self), indent=1))

    @classmethod
    def load(cls, folder: Path) -> "TrainingProgress":
        """The progress saved in ``folder``; :class:`CheckpointError` naming the file (and the field) where
        it is not JSON, or a field is missing, unknown, of the wrong type or out of range."""
        path = Path(folder) / PROGRESS_FILE
        try:
            fields = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise CheckpointError(f"{path} is truncated or corrupt ({type(error).__name__}: {error}); "
                                  f"resume from an earlier checkpoint (--resume_from_checkpoint FOLDER)") from None
        _check_progress_fields(fields, path)
        return cls(**fields)


def _is_int(value, minimum: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_record(value) -> bool:
    """A history record: an object whose ``kind`` is train or validation; a validation's ``metrics`` an
    object of finite numbers, a train log's ``train/loss`` a number (NaN included: a diverged step's log)."""
    if not isinstance(value, dict) or value.get("kind") not in ("train", "validation"):
        return False
    if value["kind"] == "train":
        return isinstance(value.get("train/loss"), (int, float)) and not isinstance(value.get("train/loss"), bool)
    metrics = value.get("metrics")
    return isinstance(metrics, dict) and all(_is_number(number) for number in metrics.values())


def _is_gradient_norms_record(value) -> bool:
    """A backbone gradient norms record: ``stage`` a name, ``step`` and ``global_step`` integers >= 1,
    ``terms`` an object of numbers, ``total`` a number (NaN included: a diverged step's norms)."""
    def is_float(number):
        return isinstance(number, (int, float)) and not isinstance(number, bool)
    return (isinstance(value, dict) and set(value) == {"stage", "step", "global_step", "terms", "total"}
            and isinstance(value["stage"], str) and _is_int(value["step"], 1) and _is_int(value["global_step"], 1)
            and isinstance(value["terms"], dict) and all(is_float(number) for number in value["terms"].values())
            and is_float(value["total"]))


def _is_scheduler_state(value) -> bool:
    """A ``LambdaLR`` state: ``last_epoch`` an int >= -1 (what the schedule resumes from) and, where given,
    ``base_lrs`` a list of finite numbers (``load_state_dict`` keeps the run's own rates without it)."""
    return (isinstance(value, dict) and _is_int(value.get("last_epoch"), -1)
            and ("base_lrs" not in value or isinstance(value["base_lrs"], list)
                 and all(_is_number(rate) for rate in value["base_lrs"])))


# each field of progress.json: (accepts its value, what it must be)
_PROGRESS_FIELDS = {
    "method": (lambda value: isinstance(value, str) and bool(value), "a method name"),
    **{name: (_is_int, "an integer >= 0") for name in ("stage_index", "epoch", "batch_in_epoch", "stage_step", "global_step")},
    "best": (lambda value: value is None or _is_record(value) and value["kind"] == "validation",
             "null or a validation record (kind, metrics: an object of finite numbers)"),
    "history": (lambda value: isinstance(value, list) and all(_is_record(entry) for entry in value),
                "a list of train and validation records"),
    "scheduler_state": (lambda value: value is None or _is_scheduler_state(value),
                        "null or a learning-rate schedule's state (last_epoch; base_lrs a list of numbers)"),
    "train_runtime_seconds": (lambda value: _is_number(value) and value >= 0, "a finite number >= 0"),
    "loss_window": (lambda value: isinstance(value, dict) and all(
        isinstance(losses, list) and all(isinstance(loss, (int, float)) and not isinstance(loss, bool) for loss in losses)
        for losses in value.values()), "an object of lists of losses"),
    "model_config": (lambda value: value is None or isinstance(value, dict), "null or an object"),
    "backbone_gradient_norms": (lambda value: isinstance(value, list) and all(map(_is_gradient_norms_record, value)),
                                "a list of records (stage, step, global_step, terms: an object of numbers, total)"),
}


def _check_progress_fields(fields, path: Path) -> None:
    """Raises :class:`CheckpointError` naming ``path`` and the field that is missing, unknown or invalid."""
    again = "resume from an earlier checkpoint (--resume_from_checkpoint FOLDER)"
    if not isinstance(fields, dict):
        raise CheckpointError(f"{path}: expected a JSON object of the run's progress, got {type(fields).__name__}; {again}")
    unknown = sorted(set(fields) - set(_PROGRESS_FIELDS))
    if unknown:
        raise CheckpointError(f"{path}: unknown field(s) {unknown}; {again}")
    if "method" not in fields:
        raise CheckpointError(f"{path}: missing field 'method'; {again}")
    for name, value in fields.items():
        accepts, expected = _PROGRESS_FIELDS[name]
        if not accepts(value):
            shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
            raise CheckpointError(f"{path}: field '{name}' must be {expected}, got {shown}; {again}")


# config fields that differ between two builds of the same model (versions, where it was loaded from)
_UNCOMPARED_CONFIG_FIELDS = {"transformers_version", "_name_or_path", "architectures", "auto_map", "dtype", "torch_dtype"}


def _flat_config(config: dict, prefix: str = "") -> dict:
    """``config`` (``PretrainedConfig.to_dict()``, JSON types) as ``{dotted field: value}``, nested configs
    flattened, the fields of :data:`_UNCOMPARED_CONFIG_FIELDS` left out."""
    flat = {}
    for name, value in config.items():
        if name in _UNCOMPARED_CONFIG_FIELDS:
            continue
        if isinstance(value, dict):
            flat.update(_flat_config(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def check_model_config(progress: TrainingProgress, config, resume_dir: Path | None) -> None:
    """Records the run's freshly built model ``config`` in ``progress`` (saved with every checkpoint). When
    resuming from ``resume_dir``, whose progress recorded the config of its run, a model built differently
    (another method's config, another dataset's ``num_ids``, other loss weights or sizes) raises
    :class:`CheckpointError` naming the checkpoint's progress file and every differing field with both values."""
    current = json.loads(json.dumps(config.to_dict(), default=str))
    saved = progress.model_config
    if resume_dir is not None and saved is not None:
        old, new = _flat_config(saved), _flat_config(current)
        differing = [f"{name}: {old.get(name, '(absent)')!r} in the checkpoint, {new.get(name, '(absent)')!r} now"
                     for name in sorted(set(old) | set(new)) if old.get(name, "(absent)") != new.get(name, "(absent)")]
        if differing:
            raise CheckpointError(f"{Path(resume_dir) / PROGRESS_FILE}: the checkpoint was written by a model of another "
                                  f"configuration ({'; '.join(differing)}); resume with the run's own arguments or start "
                                  "a new run in another --output_dir")
    progress.model_config = current


def write_manifest(folder: Path) -> None:
    """Records the size and SHA-256 of every file of the checkpoint ``folder`` in ``MANIFEST_FILE``, but
    the progress file (:meth:`TrainingProgress.load` checks it, and it stays editable)."""
    files = sorted(path for path in folder.rglob("*") if path.is_file() and path.name not in (MANIFEST_FILE, PROGRESS_FILE))
    manifest = {str(path.relative_to(folder)): {"bytes": path.stat().st_size, "sha256": sha256_of_file(path)} for path in files}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))


def verify_checkpoint(folder: Path) -> None:
    """Raises :class:`CheckpointError` naming the first file of ``folder`` that is missing, truncated or
    altered since the checkpoint was written (checkpoints without a manifest are not checked)."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        return
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise CheckpointError(f"{manifest_path} is corrupt ({error}); resume from an earlier checkpoint") from None
    _check_manifest(manifest, manifest_path)
    for name, expected in manifest.items():
        path = folder / name
        if not path.is_file():
            problem = "is missing"
        elif path.stat().st_size != expected["bytes"]:
            problem = f"is truncated or altered ({path.stat().st_size} bytes, {expected['bytes']} when written)"
        elif sha256_of_file(path) != expected["sha256"]:
            problem = "is corrupt (its SHA-256 differs from the one recorded when it was written)"
        else:
            continue
        raise CheckpointError(f"checkpoint {folder}: {path} {problem}; resume from an earlier checkpoint "
                              "(--resume_from_checkpoint FOLDER) or start again")


def _check_manifest(manifest, path: Path) -> None:
    """Raises :class:`CheckpointError` naming ``path`` and the entry where ``manifest`` is not an object of
    ``{relative file name inside the folder: {"bytes": int >= 0, "sha256": 64 hex digits}}``."""
    again = "resume from an earlier checkpoint (--resume_from_checkpoint FOLDER)"
    if not isinstance(manifest, dict):
        raise CheckpointError(f"{path}: expected a JSON object of file names, got {type(manifest).__name__}; {again}")
    for name, entry in manifest.items():
        parts = Path(name).parts
        if not name or Path(name).is_absolute() or ".." in parts or "\0" in name:
            raise CheckpointError(f"{path}: entry {name!r} is not a file name inside the checkpoint folder; {again}")
        if not isinstance(entry, dict) or set(entry) != {"bytes", "sha256"}:
            raise CheckpointError(f"{path}: entry {name!r} must be an object with exactly 'bytes' and 'sha256', got "
                                  f"{entry!r}; {again}")
        if not _is_int(entry["bytes"]):
            raise CheckpointError(f"{path}: entry {name!r}: field 'bytes' must be an integer >= 0, got "
                                  f"{entry['bytes']!r}; {again}")
        if not (isinstance(entry["sha256"], str) and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])):
            raise CheckpointError(f"{path}: entry {name!r}: field 'sha256' must be 64 lowercase hex digits, got "
                                  f"{entry['sha256']!r}; {again}")


class CheckpointManager:
    """Writes ``checkpoint-<global step>`` folders under ``root``: Accelerate's ``save_state`` into a
    ``.tmp`` folder, then the progress file and the manifest (size + SHA-256 of every file), then a
    rename, so a kill during a save never leaves a broken "latest". Keeps the newest ``limit``
    checkpoints: an old one is first renamed ``*.deleting`` (so it is never mistaken for a complete
    one), then deleted; what a kill leaves half-written or half-deleted is removed at the next save."""

    def __init__(self, root: Path, accelerator, limit: int):
        self.root, self.accelerator, self.limit = Path(root), accelerator, limit

    def completed(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = [path for path in self.root.iterdir()
                 if re.fullmatch(rf"{_PREFIX}\d+", path.name) and (path / PROGRESS_FILE).is_file()]
        return sorted(found, key=lambda path: int(path.name[len(_PREFIX):]))

    def resolve(self, spec: str) -> Path:
        """``latest`` or a folder -> a complete checkpoint folder (or a clear error)."""
        if spec == "latest":
            completed = self.completed()
            if not completed:
                raise FileNotFoundError(f"resume_from_checkpoint latest: no complete checkpoint under {self.root}")
            return completed[-1]
        path = Path(spec)
        if not (path / PROGRESS_FILE).is_file():
            raise FileNotFoundError(f"resume_from_checkpoint: {path} is not a checkpoint folder (no {PROGRESS_FILE})")
        return path

    def remove_leftovers(self) -> None:
        """Deletes what a kill left under ``root``: ``.tmp`` and ``.deleting`` folders and checkpoint
        folders without a progress file (a save or a pruning cut short)."""
        if not self.root.is_dir():
            return
        complete = set(self.completed())
        for path in self.root.iterdir():
            if path.name.startswith(_PREFIX) and path not in complete:
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    def save(self, progress: TrainingProgress, scheduler) -> Path:
        """Writes ``checkpoint-<global step>`` (see the class docstring). Not through
        :func:`~tireid_hf.files.atomic_directory`: every rank's ``save_state`` writes into the temporary
        folder, so its name must be known to all ranks (``<name>.tmp``), not drawn by ``mkdtemp``."""
        final = self.root / f"{_PREFIX}{progress.global_step}"
        temporary = final.with_name(final.name + ".tmp")
        if self.accelerator.is_main_process:
            self.remove_leftovers()
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(temporary))
        self.accelerator.wait_for_everyone()  # every rank's random states are written
        if self.accelerator.is_main_process:
            progress.scheduler_state = scheduler.state_dict()
            progress.update_runtime()
            progress.save(temporary)
            write_manifest(temporary)
            give_usual_permissions(temporary)
            kill_point("checkpoint_written", progress.global_step)
            replaced = [final] if final.exists() else []  # a run resumed from an older checkpoint than this one
            self._delete(replaced, progress)
            temporary.rename(final)
            self._delete(self.completed()[: -self.limit] if self.limit > 0 else [], progress)
        self.accelerator.wait_for_everyone()
        return final

    def _delete(self, checkpoints: list[Path], progress: TrainingProgress) -> None:
        """Renames each folder ``*.deleting`` (it stops being a checkpoint at once), then deletes it."""
        for old in checkpoints:
            deleting = old.with_name(old.name + _DELETING)
            old.rename(deleting)
            kill_point("checkpoint_pruning", progress.global_step)
            shutil.rmtree(deleting)
