"""Data loading fit for a GPU: worker processes, persistent workers and pinned memory give the batches
of a loader without workers, with the identity sampler, across epochs and on resume."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tireid_hf.data import load_tireid_dataset
from tireid_hf.data.collators import TrainingCollator, caption_pairs
from tireid_hf.data.samplers import IdentityBatchSampler
from tireid_hf.processing import TIReIDProcessor, TrainingImageAugmentation
from tireid_hf.training.arguments import TrainingArguments
from tireid_hf.training.checkpoints import CheckpointManager
from tireid_hf.training.loop import _stage_loader
from test_training_run import DATA, Interrupted, run


def stage_batches(workers: int, persistent: bool, epochs: list[tuple[int, int]]) -> list[dict]:
    """The batches one stage loader gives over ``epochs`` ((epoch, first batch) pairs), in order."""
    split = load_tireid_dataset("synthetic", **DATA)["train"]
    pairs, pids = caption_pairs(split)
    sampler = IdentityBatchSampler(pids, 8, 2, seed=7)
    collator = TrainingCollator(split, TIReIDProcessor.for_image_size((64, 32)), None, (), TrainingImageAugmentation())
    args = TrainingArguments(dataloader_num_workers=workers, dataloader_persistent_workers=persistent, seed=7)
    loader, keys = _stage_loader(pairs, collator, args, rank=0, device=torch.device("cpu"))
    batches = []
    for epoch, start in epochs:
        sampler.set_epoch(epoch)
        keys.set_epoch(epoch, list(sampler), start)
        batches += list(loader)
    return batches


def test_two_persistent_workers_give_the_batches_of_no_workers_across_epochs_and_from_a_resume_point():
    epochs = [(0, 0), (1, 0), (2, 4)]  # two whole epochs (6 batches each), then the third (7) resumed at batch 4
    without = stage_batches(0, False, epochs)
    assert len(without) == 6 + 6 + 3
    for workers, persistent in ((2, True), (2, False)):
        with_workers = stage_batches(workers, persistent, epochs)
        assert len(with_workers) == len(without)
        for expected, batch in zip(without, with_workers):
            assert batch.keys() == expected.keys()
            for key in expected:
                assert torch.equal(batch[key], expected[key]), key
    # the resumed epoch's batches are its batches 4 to 6, collated as in the whole epoch
    whole_epoch = stage_batches(0, False, [(2, 0)])
    for expected, batch in zip(whole_epoch[4:], without[12:], strict=True):
        assert torch.equal(batch["pixel_values"], expected["pixel_values"])
    assert not torch.equal(without[12]["pixel_values"], whole_epoch[0]["pixel_values"])


def test_persistent_workers_without_workers_are_refused():
    with pytest.raises(ValueError, match="dataloader_persistent_workers needs dataloader_num_workers > 0"):
        TrainingArguments(dataloader_persistent_workers=True)
    with pytest.raises(ValueError, match="dataloader_num_workers must be >= 0, got -1"):
        TrainingArguments(dataloader_num_workers=-1)


WORKERS = ("--dataloader_num_workers", "2", "--dataloader_persistent_workers", "true")


def test_a_run_with_workers_killed_mid_epoch_resumes_to_the_weights_of_a_run_without_workers(tmp_path, monkeypatch):
    """12 steps (2 epochs of 6 batches) without workers; the same with 2 persistent workers, killed after
    the checkpoint at step 4 and resumed with workers: bit-identical final weights."""
    (tmp_path / "plain").mkdir()
    (tmp_path / "workers").mkdir()
    run(tmp_path / "plain", "--max_steps", "12", "--save_steps", "4")
    original_save = CheckpointManager.save

    def save_then_die(self, progress, scheduler):
        path = original_save(self, progress, scheduler)
        if progress.global_step == 4:
            raise Interrupted
        return path

    monkeypatch.setattr(CheckpointManager, "save", save_then_die)
    with pytest.raises(Interrupted):
        run(tmp_path / "workers", "--max_steps", "12", "--save_steps", "4", *WORKERS)
    monkeypatch.setattr(CheckpointManager, "save", original_save)
    run(tmp_path / "workers", "--max_steps", "12", "--save_steps", "4", "--resume_from_checkpoint", "latest", *WORKERS)
    plain = load_file(tmp_path / "plain" / "out" / "checkpoints" / "checkpoint-12" / "model.safetensors")
    resumed = load_file(tmp_path / "workers" / "out" / "checkpoints" / "checkpoint-12" / "model.safetensors")
    assert plain.keys() == resumed.keys()
    for name in plain:
        torch.testing.assert_close(resumed[name], plain[name], rtol=0, atol=0, msg=name)
