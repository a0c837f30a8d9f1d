"""The one training loop of the zoo, with Accelerate (one process or many, CPU or GPU).

:func:`train` runs, top to bottom: check and recover the output folder (:mod:`.output_folder`) ->
``Accelerator`` -> the resume point -> data, seed, model -> for each training stage of the method
(:func:`_train_stage`): optimizer, scheduler -> ``prepare`` -> (resume) -> loop under ``accumulate`` ->
validate (:func:`_validate`: rank metrics and the score threshold of same-person decisions at
``threshold_fpr``, kept in the best model's config) -> checkpoint -> at the end (:func:`_finish`): the
best model (chosen on VALIDATION), evaluated once on test (re-ranked where
:func:`~tireid_hf.retrieval.second_stage_results` allows), saved with ``save_pretrained`` + processor +
``results.json`` (:mod:`.results`).

Nothing here knows a method by name: a method declares what its batch needs through its
``text_transforms`` and its stages through ``training_stages()`` / ``start_stage()``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import CLIPConfig

from ..data import load_tireid_dataset
from ..errors import TIReIDInputError
from ..files import atomic_text
from ..data.collators import TrainingCollator, add_word_spans, caption_pairs, epoch_generator_seed
from ..data.samplers import IdentityBatchSampler
from ..modeling import METHODS
from ..processing import TIReIDProcessor, TrainingImageAugmentation
from ..retrieval import evaluate_split, matching_accuracy, second_stage_results
from .arguments import DataArguments, ModelArguments, TrainingArguments
from .checkpoints import CheckpointError, CheckpointManager, TrainingProgress, check_model_config, verify_checkpoint
from ..faults import kill_point
from .gradient_norms import backbone_gradient_norms, backbone_parameters
from .numerics import check_finite_loss
from .optim import build_optimizer, build_scheduler
from .output_folder import (PER_QUERY_FILE, RESULTS_FILE, best_model_folder, check_output_dir, complete_final_move,
                            finished_results, remove_interrupted_saves, save_best_model, start_over,
                            writing_output_dir)
from .results import summary_table, training_results


@dataclass
class TrainingRun:
    """What every part of one training job shares, built once by :func:`train`.

    ``dataset`` is the whole ``DatasetDict`` (validation and test are evaluated from it); ``pairs`` are
    the training (image row, caption) pairs that ``sampler`` batches by identity and ``collator`` turns
    into model inputs; ``stages`` are the method's ``training_stages()``; ``progress`` is where the run
    stands (saved in every checkpoint)."""

    model_args: ModelArguments
    data_args: DataArguments
    args: TrainingArguments
    accelerator: Accelerator
    output: Path
    checkpoints: CheckpointManager
    progress: TrainingProgress
    dataset: dict
    processor: TIReIDProcessor
    pairs: list
    sampler: IdentityBatchSampler
    collator: TrainingCollator
    stages: list[str]

    @property
    def directions(self) -> tuple[str, ...]:
        """The retrieval directions evaluated: ``("t2i", "i2t")`` with ``eval_i2t``, else ``("t2i",)``."""
        return ("t2i", "i2t") if self.args.eval_i2t else ("t2i",)


def train(model_args: ModelArguments, data_args: DataArguments, args: TrainingArguments) -> dict:
    """Run a whole training job; returns the content of ``results.json``. The run holds output_dir's
    writer lock from its first check to its end (:func:`.output_folder.writing_output_dir`)."""
    with writing_output_dir(model_args, data_args, args):
        return _run(model_args, data_args, args)


def _run(model_args: ModelArguments, data_args: DataArguments, args: TrainingArguments) -> dict:
    check_output_dir(args)
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
        complete_final_move(output)
        remove_interrupted_saves(output)
        checkpoints.remove_leftovers()
    accelerator.wait_for_everyone()
    resume_dir, progress = _resume_point(checkpoints, args.resume_from_checkpoint, model_args.method)
    if accelerator.is_main_process and args.overwrite_output_dir and not resume_dir and output.is_dir():
        start_over(output)
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
    check_model_config(progress, model.config, resume_dir)
    processor = TIReIDProcessor.for_image_size(model.config.image_size)
    if model.text_transforms:
        with accelerator.main_process_first():
            train_split = add_word_spans(train_split)
    pairs, pair_pids = caption_pairs(train_split)
    run = TrainingRun(
        model_args=model_args, data_args=data_args, args=args, accelerator=accelerator, output=output,
        checkpoints=checkpoints, progress=progress, dataset=dataset, processor=processor, pairs=pairs,
        sampler=IdentityBatchSampler(pair_pids, args.per_device_train_batch_size, data_args.instances_per_identity,
                                     seed=args.seed, num_replicas=accelerator.num_processes,
                                     rank=accelerator.process_index),
        collator=TrainingCollator(train_split, processor, model.config, model.text_transforms,
                                  TrainingImageAugmentation() if data_args.image_augmentation else None),
        stages=model.training_stages(),
    )
    accelerator.init_trackers("tireid", config=_flat_hyperparameters(model_args, data_args, args))
    accelerator.print(
        f"{model_args.method} on {data_args.dataset}: {len(train_split)} train images / {len(pairs)} captions / "
        f"{num_ids} identities; {accelerator.num_processes} process(es) on {accelerator.device}; "
        f"stages {run.stages}"
    )

    progress.start_clock()
    for stage_index, stages_to_start, resumes in _stage_plan(run.stages, progress.stage_index, resume_dir is not None):
        for name in stages_to_start:
            model.start_stage(name)
        if not resumes:
            progress.start_stage(stage_index)
        model = _train_stage(run, model, resume_dir if resumes else None)
    results = _finish(run)
    accelerator.end_training()  # also closes the process group: after the distributed test evaluation
    return results


def build_model(model_args: ModelArguments, num_ids: int):
    """The method's model: around a CLIP checkpoint (``clip_name_or_path``) or randomly initialised
    from ``model_config`` (e.g. the tiny CLIP of the synthetic configs)."""
    config_class, model_class = METHODS[model_args.method]
    fields = {**model_args.model_config, "num_ids": num_ids}
    path = model_args.clip_name_or_path
    try:  # the method's config checks model_config's values (image_size against the CLIP's patch size, ...)
        config = config_class(**({"clip_config": CLIPConfig.from_pretrained(path).to_dict()} if path else {}), **fields)
    except (TypeError, ValueError) as error:
        raise TIReIDInputError(f"model_config: {error}") from error
    return model_class.from_clip(path, **fields) if path else model_class(config)


def _trackers(args: TrainingArguments) -> list[str]:
    """The trackers named by ``report_to`` (comma-separated; ``none`` names none); tensorboard is left
    out, with a message, when it is not installed."""
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


def _train_stage(run: TrainingRun, model, resume_dir: Path | None):
    """One stage of ``model`` (the stage ``run.progress.stage_index``, resumed from ``resume_dir`` when
    given): a fresh optimizer and schedule over ``num_train_epochs`` (or ``max_steps``). Returns the
    trained model, unwrapped."""
    accelerator, args, progress = run.accelerator, run.args, run.progress
    stage = run.stages[progress.stage_index]
    steps_per_epoch, total_steps, eval_every = _stage_budget(len(run.sampler), args)
    optimizer = build_optimizer(model, args)
    scheduler = build_scheduler(optimizer, args, total_steps, steps_per_epoch)
    model, optimizer = accelerator.prepare(model, optimizer)
    if resume_dir is not None:  # after the scheduler is built: the loaded optimizer state keeps its lrs
        _restore_state(accelerator, scheduler, progress, resume_dir)
        accelerator.print(f"resumed from {resume_dir}: stage {stage}, step {progress.stage_step}, epoch {progress.epoch}")
    bar = tqdm(total=total_steps, initial=progress.stage_step, desc=f"training [{stage}]", unit="step",
               disable=not accelerator.is_local_main_process)
    model.train()
    loader, keys = _stage_loader(run.pairs, run.collator, args, accelerator.process_index, accelerator.device)
    while progress.stage_step < total_steps:
        run.sampler.set_epoch(progress.sampler_epoch())
        batches = list(run.sampler)
        keys.set_epoch(progress.sampler_epoch(), batches, progress.batch_in_epoch)
        window_start, batches_in_window = time.perf_counter(), 0
        for batch in loader:
            batch = {key: value.to(accelerator.device, non_blocking=True) for key, value in batch.items()}
            with accelerator.accumulate(model):
                outputs = model(**batch)
                check_finite_loss(outputs, accelerator, args, step=progress.global_step + 1, stage=stage,
                                  stage_step=progress.stage_step + 1)
                if accelerator.sync_gradients and _measures_backbone(progress.stage_step + 1, eval_every, total_steps):
                    _record_backbone_gradients(run, model, outputs, stage)
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
                logs = _log_training(run, optimizer, time.perf_counter() - window_start, batches_in_window)
                bar.set_postfix(loss=f"{logs['train/loss']:.3f}")
                progress.loss_window, window_start, batches_in_window = {}, time.perf_counter(), 0
            if _due(progress.stage_step, eval_every, total_steps):
                _validate(run, model)
            if _due(progress.stage_step, args.save_steps, total_steps):
                run.checkpoints.save(progress, scheduler)
            if progress.stage_step >= total_steps:
                break
        if _epoch_complete(progress.batch_in_epoch, len(batches)):
            progress.end_epoch()
    bar.close()
    unwrapped = accelerator.unwrap_model(model)
    _check_replicas_agree(unwrapped, accelerator)
    accelerator.free_memory()
    return unwrapped


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


def _measures_backbone(step: int, eval_every: int, total_steps: int) -> bool:
    """Whether the stage's optimizer step ``step`` records its backbone gradient norms: its first step
    and every step where validation runs (:func:`_due` of ``eval_every``)."""
    return step == 1 or _due(step, eval_every, total_steps)


def _record_backbone_gradients(run: TrainingRun, model, outputs, stage: str) -> None:
    """Adds to ``progress.backbone_gradient_norms`` ``{"stage", "step" (the stage's optimizer step about
    to be taken), "global_step", "terms", "total"}``: :func:`.gradient_norms.backbone_gradient_norms` of
    this forward's weighted loss terms on the unwrapped model's trainable ``clip`` parameters. Called
    before the step's backward, on the micro-batch that completes the step (with gradient accumulation,
    that micro-batch's gradients alone, not divided by the accumulation steps). Only the main process
    measures, on its local batch: ``torch.autograd.grad`` runs no collective (DDP synchronises in
    ``backward`` only), so the other processes go on to the step's backward without waiting."""
    if not run.accelerator.is_main_process:
        return
    progress, unwrapped = run.progress, run.accelerator.unwrap_model(model)
    norms = backbone_gradient_norms(outputs.losses, unwrapped.config.loss_weight, backbone_parameters(unwrapped))
    progress.backbone_gradient_norms.append({"stage": stage, "step": progress.stage_step + 1,
                                             "global_step": progress.global_step + 1, **norms})


def _epoch_complete(batch_in_epoch: int, num_batches: int) -> bool:
    """Whether the epoch's batches are all trained on. A stage whose last step falls mid-epoch leaves
    its epoch open: a run resumed with a larger budget goes on with that epoch's next batch."""
    return batch_in_epoch >= num_batches


def _restore_state(accelerator, scheduler, progress: TrainingProgress, resume_dir: Path) -> None:
    """Loads a checkpoint into a prepared model and optimizer (``accelerator.load_state``: weights,
    optimizer moments, every process' random states) and the learning-rate schedule's position."""
    accelerator.load_state(str(resume_dir))
    scheduler.load_state_dict(progress.scheduler_state)


def _log_training(run: TrainingRun, optimizer, elapsed: float, batches_in_window: int) -> dict:
    """Logs (trackers and ``progress.history``) and returns the train log of the window of
    ``batches_in_window`` batches that took ``elapsed`` seconds: ``train/<loss>`` = mean of each loss
    over the window, ``lr/<group name>`` = each parameter group's rate, ``train/samples_per_second``
    = batches x per-device batch size x processes / elapsed."""
    samples = batches_in_window * run.args.per_device_train_batch_size * run.accelerator.num_processes
    logs = {f"train/{name}": sum(values) / len(values) for name, values in run.progress.loss_window.items()}
    logs.update({f"lr/{group['name']}": group["lr"] for group in optimizer.param_groups})
    logs["train/samples_per_second"] = samples / max(elapsed, 1e-9)
    run.accelerator.log(logs, step=run.progress.global_step)
    run.progress.record_train(logs)
    return logs


def _check_replicas_agree(model, accelerator) -> None:
    """Every process must end a stage with the same weights (gradients were synchronised)."""
    if accelerator.num_processes == 1:
        return
    with torch.no_grad():
        checksum = torch.stack([parameter.double().sum() for parameter in model.parameters()]).sum().view(1)
    checksums = accelerator.gather(checksum.to(accelerator.device)).cpu()
    if not torch.allclose(checksums, checksums[0], rtol=1e-9, atol=0):
        raise RuntimeError(f"weights diverged across processes (checksums {checksums.tolist()}): gradients were not synchronised")


def _validate(run: TrainingRun, model) -> None:
    """Validation metrics of the current weights of ``model`` (prepared); the best ones (on
    ``metric_for_best_model``, final stage only) are saved as the inference-only model in
    ``output/best``."""
    accelerator, args, progress = run.accelerator, run.args, run.progress
    unwrapped = accelerator.unwrap_model(model)
    validation = run.dataset["validation"]
    metrics = evaluate_split(unwrapped, run.processor, validation, batch_size=args.per_device_eval_batch_size,
                             directions=run.directions, accelerator=accelerator, show_progress=False,
                             threshold_fpr=args.threshold_fpr)
    if unwrapped.can_rerank:
        metrics.update(matching_accuracy(unwrapped, run.processor, validation, batch_size=args.per_device_eval_batch_size))
    model.train()
    accelerator.log({f"validation/{key}": value for key, value in metrics.items()}, step=progress.global_step)
    key = f"t2i/{args.metric_for_best_model}"
    if key not in metrics:
        raise ValueError(f"metric_for_best_model {args.metric_for_best_model!r} is not a metric; got {sorted(metrics)}")
    final_stage = progress.stage_index == len(run.stages) - 1
    improved = progress.record_validation(metrics, key, consider_for_best=final_stage)
    accelerator.print(
        f"[{run.stages[progress.stage_index]}] epoch {progress.epoch + 1} step {progress.stage_step}: "
        f"loss {progress.last_train_loss():.4f} | validation R1 {metrics['t2i/R1']:.2f} R5 {metrics['t2i/R5']:.2f} "
        f"mAP {metrics['t2i/mAP']:.2f} mINP {metrics['t2i/mINP']:.2f}"
        + (f" | matching accuracy {metrics['itm/accuracy']:.3f}" if "itm/accuracy" in metrics else "")
        + (" (best)" if improved else "")
    )
    if improved and accelerator.is_main_process:
        best = unwrapped.export_for_inference()
        # the same-person score threshold of these weights, picked on this validation (config.json carries it)
        best.config.score_threshold, best.config.score_threshold_fpr = metrics["t2i/score_threshold"], args.threshold_fpr
        save_best_model(best, run.processor, run.output)
    accelerator.wait_for_everyone()


def _finish(run: TrainingRun) -> dict:
    """Evaluate the best model once on test, move it to ``output_dir`` and write ``results.json``.

    The best model is ``output/best``, or, for a resumed run that had finished already (the model in
    ``output_dir`` is the one of ``progress.best``), ``output_dir`` itself: then nothing is trained or
    written again and the run says so (a larger ``max_steps`` trains on and ends here as any run)."""
    from transformers import AutoModel

    accelerator, args, progress, output = run.accelerator, run.args, run.progress, run.output
    best_folder = best_model_folder(output, progress)
    if best_folder is None:
        accelerator.print(f"{output}: this run has finished already (step {progress.global_step}); its "
                          f"{RESULTS_FILE} is unchanged. Pass a larger --max_steps or --num_train_epochs to "
                          "train on.")
        return finished_results(output, progress)
    best = AutoModel.from_pretrained(best_folder).to(accelerator.device)
    processor = TIReIDProcessor.from_pretrained(best_folder)
    test, test_per_query = evaluate_split(best, processor, run.dataset["test"], batch_size=args.per_device_eval_batch_size,
                                          directions=run.directions, accelerator=accelerator,
                                          show_progress=accelerator.is_local_main_process, return_per_query=True)
    progress.update_runtime()
    results = training_results(run.model_args, run.data_args, args, progress, num_processes=accelerator.num_processes,
                               test=test, best_config=best.config)
    results.update(second_stage_results(best, processor, run.dataset, progress.best["metrics"],
                                        batch_size=args.per_device_eval_batch_size, accelerator=accelerator))
    if accelerator.is_main_process:
        atomic_text(best_folder / PER_QUERY_FILE, json.dumps(test_per_query))
        atomic_text(best_folder / RESULTS_FILE, json.dumps(results, indent=2))
        complete_final_move(output)
        print(summary_table(results))
    accelerator.wait_for_everyone()
    return results


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

    ``start`` resumes mid-epoch without collating the skipped batches."""

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
