"""Resumable checkpoints: Accelerate's state + where the run stood, written atomically."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

PROGRESS_FILE = "progress.json"
_PREFIX = "checkpoint-"


@dataclass
class TrainingProgress:
    """Where a run stands, saved in every checkpoint so a resumed run continues exactly there.

    ``epoch`` / ``batch_in_epoch`` / ``stage_step`` count within the current stage; ``global_step``
    over the whole run. ``best`` holds the best validation record, ``history`` every train log and
    validation, ``scheduler_state`` the learning-rate schedule's state.
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
        return cls(**json.loads((folder / PROGRESS_FILE).read_text()))


class CheckpointManager:
    """Writes ``checkpoint-<global step>`` folders under ``root``: Accelerate's ``save_state`` into a
    ``.tmp`` folder, then the progress file, then a rename, so a kill during a save never leaves a
    broken "latest". Keeps the newest ``limit`` checkpoints."""

    def __init__(self, root: Path, accelerator, limit: int):
        self.root, self.accelerator, self.limit = Path(root), accelerator, limit

    def completed(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = [path for path in self.root.iterdir()
                 if path.name.startswith(_PREFIX) and not path.name.endswith(".tmp") and (path / PROGRESS_FILE).is_file()]
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

    def save(self, progress: TrainingProgress, scheduler) -> Path:
        final = self.root / f"{_PREFIX}{progress.global_step}"
        temporary = final.with_name(final.name + ".tmp")
        if self.accelerator.is_main_process:
            shutil.rmtree(temporary, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(temporary))
        if self.accelerator.is_main_process:
            progress.scheduler_state = scheduler.state_dict()
            progress.save(temporary)
            shutil.rmtree(final, ignore_errors=True)
            temporary.rename(final)
            for old in self.completed()[: -self.limit] if self.limit > 0 else []:
                shutil.rmtree(old)
        self.accelerator.wait_for_everyone()
        return final
