"""The output folder of a training run, from its checks to its final model.

``output_dir`` IS the final model folder (``AutoModel.from_pretrained(output_dir)``, the layout of
transformers' ``Trainer``) and, while the run lasts, also holds its state: ``checkpoints/``, ``logs/``,
``best/`` (the best model so far) and ``training_args.yaml``. Its lifecycle:

* :func:`writing_output_dir`: the whole run holds the folder's writer lock (a second run writing it at the
  same time, resumed or ``--overwrite_output_dir``, is refused naming the first's pid), after refusing an
  output_dir that is, contains or lies inside one of the run's inputs;
* :func:`check_output_dir`: refuse, before any compute, a folder that holds another run;
* :func:`complete_final_move` and :func:`remove_interrupted_saves`: finish what a killed run left
  (at the start of any run on the folder);
* :func:`start_over`: ``--overwrite_output_dir`` clears the previous run's state and records its
  files in a journal (``.previous_run_files.json``), deleted only once the new model is in place;
* :func:`save_best_model`: ``best/`` replaced as one folder at every new best;
* :func:`best_model_folder` / :func:`finished_results`: where the run's best model is at its end;
* :func:`complete_final_move` again: ``best/`` moved into ``output_dir``, ``results.json`` last.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterator

from ..files import atomic_directory, atomic_text, finish_replacement, refuse_overlap, writer_lock
from .arguments import DataArguments, ModelArguments, TrainingArguments
from .checkpoints import TrainingProgress
from ..faults import kill_point

BEST = "best"  # the best model so far, moved into output_dir at the end
RESULTS_FILE = "results.json"
PER_QUERY_FILE = "test_per_query.json"  # each test query's R@k, AP, INP and pid: paired comparisons of runs
# The names of output_dir that belong to a run in progress, not to its final model.
_RUN_STATE = ("checkpoints", "logs", BEST, "training_args.yaml")
# Names of a previous run's files, written when --overwrite_output_dir starts a new run over it; they are
# deleted only once the new run's model and results.json are in place.
_PREVIOUS_RUN_FILES = ".previous_run_files.json"


@contextlib.contextmanager
def writing_output_dir(model_args: ModelArguments, data_args: DataArguments, args: TrainingArguments) -> Iterator[None]:
    """Holds ``output_dir``'s :func:`~tireid_hf.files.writer_lock` for the block (the whole run): in a
    distributed run rank 0 holds it for every rank of the run (``RANK`` of the launcher). Refuses first,
    on every rank, an output_dir that is, contains or lies inside ``--data_root``, a ``--dataset`` folder or
    a ``--clip_name_or_path`` folder (:func:`~tireid_hf.files.refuse_overlap`)."""
    refuse_overlap(args.output_dir, "--output_dir", {"--data_root": data_args.data_root, "--dataset": data_args.dataset,
                                                     "--clip_name_or_path": model_args.clip_name_or_path})
    with writer_lock(args.output_dir) if int(os.environ.get("RANK", "0")) == 0 else contextlib.nullcontext():
        yield


def check_output_dir(args: TrainingArguments) -> None:
    """Refuse, before any compute, an output_dir holding another run."""
    output = Path(args.output_dir)
    if output.exists() and not output.is_dir():
        raise NotADirectoryError(f"output_dir {output} is a file, not a folder: choose another --output_dir")
    if output.exists() and any(output.iterdir()) and not args.resume_from_checkpoint and not args.overwrite_output_dir:
        raise FileExistsError(
            f"output_dir {output} is not empty (another run?): pass --overwrite_output_dir to replace it "
            "or --resume_from_checkpoint latest to continue it"
        )


def complete_final_move(output: Path) -> None:
    """Moves the finished model of ``output/best`` (it holds ``results.json`` once the run is finished)
    into ``output``, then deletes the previous run's files, if any, that ``--overwrite_output_dir`` kept
    until now and the new model did not replace.

    The files of ``output`` the new model replaces are deleted first and ``results.json`` is moved last,
    so a folder caught half-way holds no ``results.json`` and never a mix of two models' files that
    would load. Every step can be repeated: a kill anywhere in here is completed by the next call (made
    at the start of any later run on ``output``)."""
    best, marker = output / BEST, output / _PREVIOUS_RUN_FILES
    if (best / RESULTS_FILE).is_file():
        replaced = {path.name for path in best.iterdir()}
        if marker.is_file():  # names the new model replaces are not the previous run's any more
            previous = set(json.loads(marker.read_text())["files"]) - replaced
            atomic_text(marker, json.dumps({"files": sorted(previous), "finishing": True}))
        for name in sorted(replaced, key=lambda name: name != RESULTS_FILE):  # results.json first
            (output / name).unlink(missing_ok=True)
        for item in sorted(best.iterdir(), key=lambda path: path.name == RESULTS_FILE):
            os.replace(item, output / item.name)
            kill_point("final_move")
    if best.is_dir() and not any(best.iterdir()):  # every file moved, also by a call killed before this line
        best.rmdir()
    if marker.is_file() and json.loads(marker.read_text())["finishing"] and not best.exists():
        for name in json.loads(marker.read_text())["files"]:
            path = output / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        marker.unlink()


def start_over(output: Path) -> None:
    """``--overwrite_output_dir``: deletes the previous run's training state (checkpoints, logs, an
    unfinished best model) but keeps its model and ``results.json`` until this run replaces them."""
    for name in ("checkpoints", "logs", BEST):
        shutil.rmtree(output / name, ignore_errors=True)
    marker = output / _PREVIOUS_RUN_FILES
    previous = set(json.loads(marker.read_text())["files"]) if marker.is_file() else set()
    previous |= {path.name for path in output.iterdir() if path.name not in (*_RUN_STATE, _PREVIOUS_RUN_FILES)}
    atomic_text(marker, json.dumps({"files": sorted(previous), "finishing": False}))
    print(f"output_dir {output}: the previous run's model and results stay until this run replaces them")


def remove_interrupted_saves(output: Path) -> None:
    """Completes a replacement of ``best/`` a kill cut short and deletes the temporary folders of a save
    cut short before it (:func:`~tireid_hf.files.finish_replacement`)."""
    finish_replacement(output / BEST)


def save_best_model(model, processor, output: Path) -> None:
    """``save_pretrained`` of model + processor into ``output/best``, via a temporary sibling and a rename."""
    with atomic_directory(output / BEST, overwrite=True) as temporary:
        model.save_pretrained(temporary)
        processor.save_pretrained(temporary)


def best_model_folder(output: Path, progress: TrainingProgress) -> Path | None:
    """The folder of the run's best model at its end: ``output/best``; else, for a resumed run that had
    finished already (``output``'s ``results.json`` is this run's), ``output`` itself when the run trained
    on since without a new best, or None when nothing was trained since (the same history)."""
    if (output / BEST).is_dir():
        return output / BEST
    previous = finished_results(output, progress)
    if previous is None:
        raise FileNotFoundError(f"{output / BEST}: the best model of this run is missing, and {output} holds "
                                "another model; start the run again with --overwrite_output_dir")
    return None if previous["history"] == progress.history else output


def finished_results(output: Path, progress: TrainingProgress) -> dict | None:
    """The ``results.json`` in ``output`` if it is this run's (same best validation record), else None."""
    path = output / RESULTS_FILE
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return results if results.get("best_validation") == progress.best else None
