"""The one training loop of the zoo, with Accelerate (one process or many, CPU or GPU).

parse arguments -> Accelerator -> data -> seed, model -> for each training stage of the method:
optimizer, scheduler -> prepare -> (resume) -> loop under ``accumulate`` -> validate (rank metrics and the
score threshold of same-person decisions at ``threshold_fpr``, kept in the best model's config) -> checkpoint
-> at the end: the best model (chosen on VALIDATION), evaluated once on test, saved with
``save_pretrained`` + processor + ``results.json``.

Nothing here knows a method by name: a method declares what its batch needs through its
``text_transforms`` and its stages through ``training_stages()`` / ``start_stage()``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from .. import __version__
from ..data import load_tireid_dataset
from ..files import atomic_directory, atomic_text
from ..data.collators import TrainingCollator, add_word_spans, caption_pairs, epoch_generator_seed
from ..data.samplers import IdentityBatchSampler
from ..modeling import METHODS
from ..processing import TIReIDProcessor, TrainingImageAugmentation
from ..retrieval import evaluate_split, matching_accuracy
from .arguments import DataArguments, ModelArguments, TrainingArguments
from .checkpoints import CheckpointError, CheckpointManager, TrainingProgress, verify_checkpoint
from .faults import kill_point
from .optim import build_optimizer, build_scheduler


def build_model(model_args: ModelArguments, num_ids: int):
    """The method's model: around a CLIP checkpoint (``clip_name_or_path``) or randomly initialised
    from ``model_config`` (e.g. the tiny CLIP of the synthetic configs)."""
    config_class, model_class = METHODS[model_args.method]
    fields = {**model_args.model_config, "num_ids": num_ids}
    if model_args.clip_name_or_path:
        return model_class.from_clip(model_args.clip_name_or_path, **fields)
    return model_class(config_class(**fields))


class _EpochBatches(torch.utils.data.Dataset):
    """The collated batches of a stage on this rank: item ``(epoch, batch_index, indices)`` is the batch
    of ``samples[i] for i in indices``, its randomness seeded by (seed, epoch, batch_index, rank).

    The keys come from :class:`_EpochKeys` in the main process and hold all a worker needs, so one
    loader serves every epoch of a stage and its persistent workers stay valid across epochs."""

    def __init__(self, samples, collator, seed: int, rank: int):
        self.samples, self.collator, self.seed, self.rank = samples, collator, seed, rank

    def __getitem__(self, key):
        epoch, batch_index, indices = key
        seed = epoch_generator_seed(self.seed, epoch, batch_index, self.rank)
        return self.collator([self.samples[index] for index in indices], seed)


class _EpochKeys(torch.utils.data.Sampler):
    """The keys of one epoch's batches (lists of indices into the samples) from batch ``start`` on, set
    by :meth:`set_epoch` between two passes over the loader.

    ``start`` resumes mid-epoch without collating the skipped batches. Accelerate's ``skip_first_batches``
    cannot do it: it fails on a loader of whole batches (``batch_size=None``), see
    tests/test_training_parts.py::test_accelerate_skip_first_batches_fails_on_a_loader_of_whole_batches."""

    def __init__(self):
        self.keys = []

    def set_epoch(self, epoch: int, batches: list[list[int]], start: int) -> None:
        self.keys = [(epoch, batch_index, batch) for batch_index, batch in enumerate(batches)][start:]

    def __iter__(self):
        return iter(self.keys)

    def __len__(self):
        return len(self.keys)


def _stage_loader(pairs, collator, args: TrainingArguments, rank: int, device: torch.device):
    """``(loader, keys)``: the stage's loader of whole batches over :class:`_EpochBatches`, its order
    given by ``keys`` (:class:`_EpochKeys`); ``dataloader_num_workers`` worker processes, kept across
    epochs with ``dataloader_persistent_workers``, pinned memory with ``dataloader_pin_memory`` on a
    CUDA device."""
    keys = _EpochKeys()
    loader = torch.utils.data.DataLoader(_EpochBatches(pairs, collator, args.seed, rank), batch_size=None, sampler=keys,
                                         num_workers=args.dataloader_num_workers,
                                         pin_memory=args.dataloader_pin_memory and device.type == "cuda",
                                         persistent_workers=args.dataloader_persistent_workers)
    return loader, keys


BEST = "best"  # the best model so far, moved into output_dir at the end
RESULTS_FILE = "results.json"
PER_QUERY_FILE = "test_per_query.json"  # each test query's R@k, AP, INP and pid: paired comparisons of runs
# The names of output_dir that belong to a run in progress, not to its final model.
_RUN_STATE = ("checkpoints", "logs", BEST, "training_args.yaml")
# Names of a previous run's files, written when --overwrite_output_dir starts a new run over it; they are
# deleted only once the new run's model and results.json are in place.
_PREVIOUS_RUN_FILES = ".previous_run_files.json"


def _check_output_dir(args: TrainingArguments) -> None:
    """Refuse, before any compute, an output_dir holding another run."""
    output = Path(args.output_dir)
    if output.exists() and not output.is_dir():
        raise NotADirectoryError(f"output_dir {output} is a file, not a folder: choose another --output_dir")
    if output.exists() and any(output.iterdir()) and not args.resume_from_checkpoint and not args.overwrite_output_dir:
        raise FileExistsError(
            f"output_dir {output} is not empty (another run?): pass --overwrite_output_dir to replace it "
            "or --resume_from_checkpoint latest to continue it"
        )


def _complete_final_move(output: Path) -> None:
    """Moves the finished model of ``output/best`` (it holds ``results.json`` once the run is finished)
    into ``output``, then deletes the previous run's files, if any, that ``--overwrite_output_dir`` kept
    until now and the new model did not replace.

    The files of ``output`` the new model replaces are deleted first and ``results.json`` is moved last,
    so a folder caught half-way holds no ``results.json`` and never a mix of two models' files that
    would load. Every step can be repeated: a kill anywhere in here is completed by the next call (made
    at the start of any later run on ``output``).

    Why this journaled move and not one folder rename: ``output`` IS the model folder
    (``AutoModel.from_pretrained(output_dir)``, the layout of transformers' ``Trainer``) and also holds
    ``checkpoints/`` and ``logs/``; replacing it as one folder would need write access to its parent
    (it fails on a mount point) and would have to carry the run's state across. During training,
    ``best/`` itself IS replaced as one folder (``_atomic_save``) at every new best."""
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


def _start_over(output: Path) -> None:
    """``--overwrite_output_dir``: deletes the previous run's training state (checkpoints, logs, an
    unfinished best model) but keeps its model and ``results.json`` until this run replaces them."""
    for name in ("checkpoints", "logs", BEST):
        shutil.rmtree(output / name, ignore_errors=True)
    marker = output / _PREVIOUS_RUN_FILES
    previous = set(json.loads(marker.read_text())["files"]) if marker.is_file() else set()
    previous |= {path.name for path in output.iterdir() if path.name not in (*_RUN_STATE, _PREVIOUS_RUN_FILES)}
    atomic_text(marker, json.dumps({"files": sorted(previous), "finishing": False}))
    print(f"output_dir {output}: the previous run's model and results stay until this run replaces them")


def _remove_interrupted_saves(output: Path) -> None:
    """Deletes the temporary folders of best-model saves a kill cut short."""
    for path in output.glob(f".{BEST}.*-*"):
        shutil.rmtree(path, ignore_errors=True)


def _trackers(args: TrainingArguments) -> list[str]:
    names = [name.strip() for name in args.report_to.split(",") if name.strip() and name.strip() != "none"]
    if "tensorboard" in names:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            print("report_to: tensorboard is not installed, logging to the console only")
            names.remove("tensorboard")
    return names


def _flat_hyperparameters(model_args, data_args, args) -> dict:
    """Scalar arguments for the trackers' hyper-parameter tables."""
    flat = {}
    for group in (model_args, data_args, args):
        for key, value in dataclasses.asdict(group).items():
            if isinstance(value, (int, float, str, bool)):
                flat[key] = value
            elif isinstance(value, (dict, list)):
                flat[key] = json.dumps(value)
    return flat


def train(model_args: ModelArguments, data_args: DataArguments, args: TrainingArguments) -> dict:
    """Run a whole training job; returns the content of ``results.json``."""
    _check_output_dir(args)
    output = Path(args.output_dir)
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=_trackers(args) or None,
        project_dir=str(output / "logs"),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    checkpoints = CheckpointManager(output / "checkpoints", accelerator, args.save_total_limit)
    if accelerator.is_main_process and output.is_dir():
        _complete_final_move(output)
        _remove_interrupted_saves(output)
        checkpoints.remove_leftovers()
    accelerator.wait_for_everyone()
    resume_dir, progress = _resume_point(checkpoints, args.resume_from_checkpoint, model_args.method)
    if accelerator.is_main_process and args.overwrite_output_dir and not resume_dir and output.is_dir():
        _start_over(output)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
        atomic_text(output / "training_args.yaml", yaml.safe_dump(
            {**dataclasses.asdict(model_args), **dataclasses.asdict(data_args), **dataclasses.asdict(args)}, sort_keys=False))

    set_seed(args.seed)
    with accelerator.main_process_first():
        dataset = load_tireid_dataset(data_args.dataset, data_args.data_root, column_mapping=data_args.column_mapping,
                                      **data_args.dataset_options)
    train_split = dataset["train"]
    num_ids = len(set(train_split["pid"]))
    model = build_model(model_args, num_ids)
    processor = TIReIDProcessor.for_image_size(model.config.image_size)
    if model.text_transforms:
        with accelerator.main_process_first():
            train_split = add_word_spans(train_split)
    pairs, pair_pids = caption_pairs(train_split)
    sampler = IdentityBatchSampler(pair_pids, args.per_device_train_batch_size, data_args.instances_per_identity,
                                   seed=args.seed, num_replicas=accelerator.num_processes, rank=accelerator.process_index)
    collator = TrainingCollator(train_split, processor, model.config, model.text_transforms,
                                TrainingImageAugmentation() if data_args.image_augmentation else None)
    accelerator.init_trackers("tireid", config=_flat_hyperparameters(model_args, data_args, args))
    accelerator.print(
        f"{model_args.method} on {data_args.dataset}: {len(train_split)} train images / {len(pairs)} captions / "
        f"{num_ids} identities; {accelerator.num_processes} process(es) on {accelerator.device}; "
        f"stages {model.training_stages()}"
    )

    progress.start_clock()
    stages = model.training_stages()
    for stage_index, stages_to_start, resumes in _stage_plan(stages, progress.stage_index, resume_dir is not None):
        for name in stages_to_start:
            model.start_stage(name)
        if not resumes:
            progress.start_stage(stage_index)
        model = _train_stage(model, accelerator, args, sampler, pairs, collator, dataset["validation"], processor,
                             checkpoints, progress, stages, resume_dir if resumes else None, output)
    results = _finish(accelerator, args, model_args, data_args, dataset, output, progress)
    accelerator.end_training()  # also closes the process group: after the distributed test evaluation
    return results


def _resume_point(checkpoints: CheckpointManager, resume_from_checkpoint: str | None,
                  method: str) -> tuple[Path | None, TrainingProgress]:
    """Where a run starts: ``(None, a new TrainingProgress)``, or, with ``resume_from_checkpoint``
    (a folder or ``latest``), the verified checkpoint folder and its progress, which must be ``method``'s."""
    if not resume_from_checkpoint:
        return None, TrainingProgress(method=method)
    resume_dir = checkpoints.resolve(resume_from_checkpoint)
    verify_checkpoint(resume_dir)
    progress = TrainingProgress.load(resume_dir)
    if progress.method != method:
        raise CheckpointError(f"resume_from_checkpoint {resume_dir} is a {progress.method!r} run, not {method!r}")
    return resume_dir, progress


def _stage_plan(stages: list[str], first: int, resumed: bool) -> list[tuple[int, list[str], bool]]:
    """The stages left to train, from index ``first`` (the checkpoint's stage; 0 for a new run): one
    ``(index, names to start_stage in order, resumes from the checkpoint)`` per stage.

    Only the first stage of a resumed run resumes. It replays ``start_stage`` of every stage up to and
    including its own, since the model it loads into must have the modules and frozen parts those
    starts built (LCR²S's student exists only after ``start_stage("student")``); any other stage
    starts itself alone, on the model the previous stage left."""
    return [(index, stages[: index + 1] if resumed and index == first else [stages[index]], resumed and index == first)
            for index in range(first, len(stages))]


def _stage_budget(num_batches: int, args: TrainingArguments) -> tuple[int, int, int]:
    """``(steps_per_epoch, total_steps, eval_every)`` of a stage whose epoch has ``num_batches`` batches:
    steps_per_epoch = ceil(num_batches / gradient_accumulation_steps); total_steps = max_steps if > 0,
    else ceil(num_train_epochs * steps_per_epoch); eval_every = max(1, round(eval_epochs * steps_per_epoch))."""
    steps_per_epoch = math.ceil(num_batches / args.gradient_accumulation_steps)
    total_steps = args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * steps_per_epoch)
    return steps_per_epoch, total_steps, max(1, round(args.eval_epochs * steps_per_epoch))


def _due(step: int, every: int, total_steps: int) -> bool:
    """Whether a periodic event (logging, validation, checkpoint) falls on ``step``: every ``every``
    steps and at the stage's last step."""
    return step % every == 0 or step == total_steps


def _epoch_complete(batch_in_epoch: int, num_batches: int) -> bool:
    """Whether the epoch's batches are all trained on. A stage whose last step falls mid-epoch leaves
    its epoch open: a run resumed with a larger budget goes on with that epoch's next batch."""
    return batch_in_epoch >= num_batches


def _restore_state(accelerator, scheduler, progress: TrainingProgress, resume_dir: Path) -> None:
    """Loads a checkpoint into a prepared model and optimizer (``accelerator.load_state``: weights,
    optimizer moments, every process' random states) and the learning-rate schedule's position."""
    accelerator.load_state(str(resume_dir))
    scheduler.load_state_dict(progress.scheduler_state)


def _train_stage(model, accelerator, args, sampler, pairs, collator, validation, processor, checkpoints, progress,
                 stages, resume_dir, output):
    """One stage: a fresh optimizer and schedule over ``num_train_epochs`` (or ``max_steps``)."""
    stage = stages[progress.stage_index]
    steps_per_epoch, total_steps, eval_every = _stage_budget(len(sampler), args)
    optimizer = build_optimizer(model, args)
    scheduler = build_scheduler(optimizer, args, total_steps, steps_per_epoch)
    model, optimizer = accelerator.prepare(model, optimizer)
    if resume_dir is not None:  # after the scheduler is built: the loaded optimizer state keeps its lrs
        _restore_state(accelerator, scheduler, progress, resume_dir)
        accelerator.print(f"resumed from {resume_dir}: stage {stage}, step {progress.stage_step}, epoch {progress.epoch}")
    bar = tqdm(total=total_steps, initial=progress.stage_step, desc=f"training [{stage}]", unit="step",
               disable=not accelerator.is_local_main_process)
    model.train()
    loader, keys = _stage_loader(pairs, collator, args, accelerator.process_index, accelerator.device)
    while progress.stage_step < total_steps:
        sampler.set_epoch(progress.sampler_epoch())
        batches = list(sampler)
        keys.set_epoch(progress.sampler_epoch(), batches, progress.batch_in_epoch)
        window_start, batches_in_window = time.perf_counter(), 0
        for batch in loader:
            batch = {key: value.to(accelerator.device, non_blocking=True) for key, value in batch.items()}
            with accelerator.accumulate(model):
                outputs = model(**batch)
                accelerator.backward(outputs.loss)
                if accelerator.sync_gradients and args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            progress.batch_in_epoch += 1
            for name, value in {"loss": outputs.loss, **outputs.losses}.items():
                progress.loss_window.setdefault(name, []).append(value.detach().float().item())
            batches_in_window += 1
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            progress.stage_step += 1
            progress.global_step += 1
            kill_point("training_step", progress.global_step)
            bar.update(1)
            if _due(progress.stage_step, args.logging_steps, total_steps):
                elapsed = time.perf_counter() - window_start
                samples = batches_in_window * args.per_device_train_batch_size * accelerator.num_processes
                logs = {f"train/{name}": sum(values) / len(values) for name, values in progress.loss_window.items()}
                logs.update({f"lr/{group['name']}": group["lr"] for group in optimizer.param_groups})
                logs["train/samples_per_second"] = samples / max(elapsed, 1e-9)
                accelerator.log(logs, step=progress.global_step)
                progress.record_train(logs)
                bar.set_postfix(loss=f"{logs['train/loss']:.3f}")
                progress.loss_window, window_start, batches_in_window = {}, time.perf_counter(), 0
            if _due(progress.stage_step, eval_every, total_steps):
                _validate(model, accelerator, args, validation, processor, progress, output, stages)
            if _due(progress.stage_step, args.save_steps, total_steps):
                checkpoints.save(progress, scheduler)
            if progress.stage_step >= total_steps:
                break
        if _epoch_complete(progress.batch_in_epoch, len(batches)):
            progress.end_epoch()
    bar.close()
    unwrapped = accelerator.unwrap_model(model)
    _check_replicas_agree(unwrapped, accelerator)
    accelerator.free_memory()
    return unwrapped


def _check_replicas_agree(model, accelerator) -> None:
    """Every process must end a stage with the same weights (gradients were synchronised)."""
    if accelerator.num_processes == 1:
        return
    with torch.no_grad():
        checksum = torch.stack([parameter.double().sum() for parameter in model.parameters()]).sum().view(1)
    checksums = accelerator.gather(checksum.to(accelerator.device)).cpu()
    if not torch.allclose(checksums, checksums[0], rtol=1e-9, atol=0):
        raise RuntimeError(f"weights diverged across processes (checksums {checksums.tolist()}): gradients were not synchronised")


def _validate(model, accelerator, args, validation, processor, progress, output, stages) -> None:
    """Validation metrics of the current weights; the best ones (on ``metric_for_best_model``, final
    stage only) are saved as the inference-only model in ``output/best``."""
    unwrapped = accelerator.unwrap_model(model)
    metrics = evaluate_split(unwrapped, processor, validation, batch_size=args.per_device_eval_batch_size,
                             directions=("t2i", "i2t") if args.eval_i2t else ("t2i",),
                             accelerator=accelerator, show_progress=False, threshold_fpr=args.threshold_fpr)
    if unwrapped.can_rerank:
        metrics.update(matching_accuracy(unwrapped, processor, validation, batch_size=args.per_device_eval_batch_size))
    model.train()
    accelerator.log({f"validation/{key}": value for key, value in metrics.items()}, step=progress.global_step)
    key = f"t2i/{args.metric_for_best_model}"
    if key not in metrics:
        raise ValueError(f"metric_for_best_model {args.metric_for_best_model!r} is not a metric; got {sorted(metrics)}")
    final_stage = progress.stage_index == len(stages) - 1
    improved = progress.record_validation(metrics, key, consider_for_best=final_stage)
    accelerator.print(
        f"[{stages[progress.stage_index]}] epoch {progress.epoch + 1} step {progress.stage_step}: "
        f"loss {progress.last_train_loss():.4f} | validation R1 {metrics['t2i/R1']:.2f} R5 {metrics['t2i/R5']:.2f} "
        f"mAP {metrics['t2i/mAP']:.2f} mINP {metrics['t2i/mINP']:.2f}"
        + (f" | matching accuracy {metrics['itm/accuracy']:.3f}" if "itm/accuracy" in metrics else "")
        + (" (best)" if improved else "")
    )
    if improved and accelerator.is_main_process:
        best = unwrapped.export_for_inference()
        # the same-person score threshold of these weights, picked on this validation (config.json carries it)
        best.config.score_threshold, best.config.score_threshold_fpr = metrics["t2i/score_threshold"], args.threshold_fpr
        _atomic_save(best, processor, output / "best")
    accelerator.wait_for_everyone()


def _atomic_save(model, processor, folder: Path) -> None:
    """``save_pretrained`` of model + processor into ``folder``, via a temporary sibling and a rename."""
    with atomic_directory(folder, overwrite=True) as temporary:
        model.save_pretrained(temporary)
        processor.save_pretrained(temporary)


def _finish(accelerator, args, model_args, data_args, dataset, output, progress) -> dict:
    """Evaluate the best model once on test, move it to ``output_dir`` and write ``results.json``.

    The best model is ``output/best``, or, for a resumed run that had finished already (the model in
    ``output_dir`` is the one of ``progress.best``), ``output_dir`` itself: then nothing is trained or
    written again and the run says so (a larger ``max_steps`` trains on and ends here as any run)."""
    from transformers import AutoModel

    best_folder = _best_model_folder(output, progress)
    if best_folder is None:
        accelerator.print(f"{output}: this run has finished already (step {progress.global_step}); its "
                          f"{RESULTS_FILE} is unchanged. Pass a larger --max_steps or --num_train_epochs to "
                          "train on.")
        return _finished_results(output, progress)
    best = AutoModel.from_pretrained(best_folder).to(accelerator.device)
    processor = TIReIDProcessor.from_pretrained(best_folder)
    test, test_per_query = evaluate_split(best, processor, dataset["test"], batch_size=args.per_device_eval_batch_size,
                                          directions=("t2i", "i2t") if args.eval_i2t else ("t2i",),
                                          accelerator=accelerator, show_progress=accelerator.is_local_main_process,
                                          return_per_query=True)
    progress.update_runtime()
    results = {
        "method": model_args.method,
        "dataset": data_args.dataset,
        "tireid_hf_version": __version__,
        "library_versions": _library_versions(),
        "num_processes": accelerator.num_processes,
        "best_validation": progress.best,
        "test": test,
        "score_threshold": best.config.score_threshold,
        "threshold_fpr": best.config.score_threshold_fpr,
        "threshold_split": "validation",
        "train_runtime_seconds": progress.train_runtime_seconds,
        "history": progress.history,
        "config": {"model": dataclasses.asdict(model_args), "data": dataclasses.asdict(data_args),
                   "training": dataclasses.asdict(args)},
    }
    results.update(_second_stage_results(best, processor, dataset, args, accelerator, progress.best["metrics"]))
    if accelerator.is_main_process:
        atomic_text(best_folder / PER_QUERY_FILE, json.dumps(test_per_query))
        atomic_text(best_folder / RESULTS_FILE, json.dumps(results, indent=2))
        _complete_final_move(output)
        print(_summary_table(results))
    accelerator.wait_for_everyone()
    return results


def _second_stage_results(model, processor, dataset, args, accelerator, best_validation: dict) -> dict:
    """What a model that can re-rank adds to ``results.json`` (nothing for the others): ``test_reranked``,
    or ``rerank_skipped`` with the reason. Both gates look at VALIDATION only: the matching head must beat
    a constant answer (:func:`rerank_refusal`, on held-out pairs), then re-ranking must raise the first
    stage's validation R@1 (:func:`rerank_gain_refusal`; the re-ranked validation metrics are kept as
    ``validation_reranked``)."""
    if not model.can_rerank:
        return {}

    def reranked(split: str) -> dict:
        return evaluate_split(model, processor, dataset[split], batch_size=args.per_device_eval_batch_size, rerank=True,
                              rerank_k=model.rerank_k, accelerator=accelerator,
                              show_progress=accelerator.is_local_main_process)

    added = {}
    refused = rerank_refusal(best_validation)
    if refused is None:
        added["validation_reranked"] = reranked("validation")
        refused = rerank_gain_refusal(best_validation, added["validation_reranked"], model.rerank_k)
    if refused:
        accelerator.print(f"no re-ranked test evaluation: {refused}")
        return {**added, "rerank_skipped": refused}
    return {**added, "test_reranked": reranked("test")}


def rerank_gain_refusal(validation_metrics: dict, reranked_metrics: dict, rerank_k: int) -> str | None:
    """Why the second stage must not re-rank test although its head beats chance, or None when it may:
    re-ranking must RAISE validation R@1 over the first stage's. A head barely above chance re-ranked
    worse than the embedding order twice in the zoo report (balanced accuracy 0.545: test R@1 20.60 ->
    16.10; 0.557: -5.55), while the balanced-accuracy gate alone let both through."""
    plain, reranked = validation_metrics["t2i/R1"], reranked_metrics["t2i/R1"]
    if reranked > plain:
        return None
    return f"re-ranking each query's top {rerank_k} does not raise validation R@1 ({plain:.2f} -> {reranked:.2f})"


def rerank_refusal(validation_metrics: dict) -> str | None:
    """Why the second stage must not re-rank, or None when it may.

    A matching head re-ranks only when, on the validation split's held-out positive / hardest-negative
    pairs (:func:`~tireid_hf.retrieval.matching_accuracy`), its balanced accuracy beats the 0.5 of a
    constant answer by more than two standard errors, ``0.5 + 2 * 0.5 / sqrt(2 Q)`` for Q queries:
    otherwise re-ranking would re-order the top-k by noise.
    """
    accuracy, queries = validation_metrics.get("itm/accuracy"), validation_metrics.get("itm/num_queries")
    if accuracy is None or not queries:
        return None
    threshold = 0.5 + 2 * 0.5 / math.sqrt(2 * queries)
    if accuracy > threshold:
        return None
    return (f"the matching head's balanced accuracy on validation pairs is {accuracy:.3f}, not above "
            f"{threshold:.3f} (a constant answer gets 0.5; {int(queries)} queries): it would re-rank by noise")


def _library_versions() -> dict[str, str]:
    """Versions of what the numbers depend on (Pillow's resize included: its output changed across majors)."""
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "transformers", "accelerate", "pillow", "numpy")}


def _best_model_folder(output: Path, progress: TrainingProgress) -> Path | None:
    """The folder of the run's best model at its end: ``output/best``; else, for a resumed run that had
    finished already (``output``'s ``results.json`` is this run's), ``output`` itself when the run trained
    on since without a new best, or None when nothing was trained since (the same history)."""
    if (output / BEST).is_dir():
        return output / BEST
    previous = _finished_results(output, progress)
    if previous is None:
        raise FileNotFoundError(f"{output / BEST}: the best model of this run is missing, and {output} holds "
                                "another model; start the run again with --overwrite_output_dir")
    return None if previous["history"] == progress.history else output


def _finished_results(output: Path, progress: TrainingProgress) -> dict | None:
    """The ``results.json`` in ``output`` if it is this run's (same best validation record), else None."""
    path = output / RESULTS_FILE
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return results if results.get("best_validation") == progress.best else None


def _summary_table(results: dict) -> str:
    keys = ("R1", "R5", "R10", "mAP", "mINP")
    rows = [("validation (best)", results["best_validation"]["metrics"]), ("test", results["test"])]
    if "test_reranked" in results:
        rows.append(("test, re-ranked", results["test_reranked"]))
    lines = [f"| {results['method']} on {results['dataset']} | " + " | ".join(keys) + " |",
             "|---|" + "---|" * len(keys)]
    lines += [f"| {name} | " + " | ".join(f"{metrics[f't2i/{key}']:.2f}" for key in keys) + " |" for name, metrics in rows]
    return "\n".join(lines)
