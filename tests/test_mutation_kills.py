"""Tests written to kill the mutants `make mutation` found surviving (TESTING.md): each pins a behaviour
of the mutated module that no other test read. Grouped by module."""

import dataclasses
import hashlib
import json
import logging
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator

from tireid_hf.data import readers
from tireid_hf.data.readers import RAW_FORMATS, _parse_id, parse_record, read_json_records, read_raw_dataset
from tireid_hf.data.schema import DatasetFormatError, summarize
from tireid_hf.metrics.bootstrap import identity_resample_counts, paired_bootstrap
from tireid_hf.metrics.retrieval import per_query_metrics
from tireid_hf.modeling import LCR2SModel
from tireid_hf.training import checkpoints as checkpoints_module
from tireid_hf.training import loop, output_folder
from tireid_hf.training.checkpoints import CheckpointError, CheckpointManager, TrainingProgress, verify_checkpoint, write_manifest
from test_data_readers import make_release
from tester import ModelTester


# ----------------------------------------------------------------------------- metrics/bootstrap.py
def test_resample_counts_come_from_the_given_generator_only():
    torch.manual_seed(0)
    first = identity_resample_counts(6, 50, torch.Generator().manual_seed(4))
    torch.manual_seed(1)  # the global generator must not matter
    assert torch.equal(identity_resample_counts(6, 50, torch.Generator().manual_seed(4)), first)
    assert not torch.equal(identity_resample_counts(6, 50, torch.Generator().manual_seed(5)), first)


def _bootstrap_case():
    generator = torch.Generator().manual_seed(2)
    pids = torch.arange(30) // 3
    return torch.rand(2, 30, generator=generator), torch.rand(2, 30, generator=generator), pids


def test_bootstrap_is_a_function_of_its_seed_not_of_the_global_generator():
    a, b, pids = _bootstrap_case()
    torch.manual_seed(0)
    first = paired_bootstrap(a, b, pids, num_resamples=200, seed=3)
    torch.manual_seed(1)
    assert paired_bootstrap(a, b, pids, num_resamples=200, seed=3) == first
    assert paired_bootstrap(a, b, pids, num_resamples=200, seed=4) != first


def test_bootstrap_interval_is_the_percentile_interval_of_the_resampled_differences_by_hand():
    """delta_r = sum_u c_ru D_u / sum_u c_ru N_u over the same counts, then the (1 -+ confidence) / 2
    quantiles, computed here with plain loops (identities are pids 0..9 in order, 3 queries each)."""
    a, b, pids = _bootstrap_case()
    difference = (a.double() - b.double()).mean(dim=0)
    counts = identity_resample_counts(10, 300, torch.Generator().manual_seed(7))
    deltas = []
    for row in counts.tolist():
        total = sum(row[u] * difference[3 * u: 3 * u + 3].sum().item() for u in range(10))
        deltas.append(total / sum(3 * row[u] for u in range(10)))
    deltas = torch.tensor(deltas, dtype=torch.float64)
    for confidence in (0.8, 0.95):
        result = paired_bootstrap(a, b, pids, num_resamples=300, confidence=confidence, seed=7, scale=1.0)
        tail = (1 - confidence) / 2
        assert result.low == pytest.approx(torch.quantile(deltas, tail).item(), abs=1e-12)
        assert result.high == pytest.approx(torch.quantile(deltas, 1 - tail).item(), abs=1e-12)
        assert (result.confidence, result.num_resamples, result.num_identities) == (confidence, 300, 10)


def test_bootstrap_keeps_the_float64_precision_of_python_values():
    """Python floats would be float32 tensors by default: 1e8 + 6 and 1e8 + 3 round to 1e8 + 8 and 1e8."""
    a, b = [1e8 + 6.0, 1e8 + 6.0], [1e8 + 3.0, 1e8 + 3.0]
    result = paired_bootstrap(a, b, [0, 1], num_resamples=10, scale=1.0)
    assert (result.delta, result.low, result.high) == (3.0, 3.0, 3.0)


def test_bootstrap_defaults_are_2000_resamples_from_seed_0():
    a, b, pids = _bootstrap_case()
    default = paired_bootstrap(a, b, pids)
    assert default.num_resamples == 2000 and default.confidence == 0.95
    assert default == paired_bootstrap(a, b, pids, num_resamples=2000, confidence=0.95, seed=0)


def test_bootstrap_accepts_one_resample_and_refuses_none():
    a, b, pids = _bootstrap_case()
    single = paired_bootstrap(a, b, pids, num_resamples=1)
    assert single.num_resamples == 1 and single.low == single.high
    with pytest.raises(ValueError, match=r"num_resamples must be >= 1, got 0"):
        paired_bootstrap(a, b, pids, num_resamples=0)


@pytest.mark.parametrize("confidence", [0.0, 1.0])
def test_bootstrap_refuses_a_confidence_of_zero_or_one(confidence):
    a, b, pids = _bootstrap_case()
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
        paired_bootstrap(a, b, pids, confidence=confidence)


# ----------------------------------------------------------------------------- metrics/retrieval.py
def test_per_query_metrics_refuse_a_query_without_match_by_default():
    with pytest.raises(ValueError, match="1 of 3 queries have no gallery item with the same pid"):
        per_query_metrics(torch.rand(3, 2), [0, 5, 1], [0, 1])


def test_per_query_metrics_follow_the_direction():
    similarity = torch.tensor([[0.9, 0.1, 0.5],
                               [0.2, 0.8, 0.7]])  # text rows (pids 0, 1) x image columns (pids 0, 1, 1)
    i2t = per_query_metrics(similarity, [0, 1], [0, 1, 1], ks=(1,), direction="i2t")
    assert i2t["R1"].tolist() == [1.0, 1.0, 1.0] and i2t["pid"].tolist() == [0, 1, 1]
    t2i = per_query_metrics(similarity, [0, 1], [0, 1, 1], ks=(1,))
    assert t2i["query_index"].tolist() == [0, 1]


# ----------------------------------------------------------------------------- modeling_lcr2s.py
def test_student_stage_classifier_is_initialised_as_an_id_head_in_the_models_dtype():
    """The fresh ``student_id_classifier`` of ``start_stage("student")``: N(0, 0.001) weights, zero bias
    (not nn.Linear's uniform default, std ~ 1 / sqrt(3 D)), in the dtype of a model converted to float64."""
    model = ModelTester("lcr2s").model().double()
    torch.manual_seed(0)
    model.start_stage("student")
    classifier = model.student_id_classifier
    assert classifier.weight.dtype == torch.float64 and classifier.bias.dtype == torch.float64
    assert 0.0005 < classifier.weight.std().item() < 0.002
    assert torch.equal(classifier.bias, torch.zeros_like(classifier.bias))


def test_student_checkpoint_loaded_with_its_loading_info_has_its_teacher_frozen(tmp_path):
    model = ModelTester("lcr2s").model()
    model.start_stage("student")
    model.save_pretrained(tmp_path)
    loaded, info = LCR2SModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"]
    assert loaded.teacher_clip is not None
    assert not any(p.requires_grad for p in [*loaded.teacher_clip.parameters(), *loaded.fusion.parameters()])


def test_fusion_takes_its_mlp_width_and_dropout_from_the_config():
    model = ModelTester("lcr2s", fusion_mlp_ratio=2.0, fusion_dropout=0.5).model()
    width = model.config.embed_dim
    queries, memory = torch.randn(3, 1, width), torch.randn(3, 4, width)
    for fusion in model.fusion.values():
        assert fusion.mlp[0].out_features == 2 * width
        fusion.train()
        assert not torch.equal(fusion(queries, memory), fusion(queries, memory))  # dropout is on
        fusion.eval()
        assert torch.equal(fusion(queries, memory), fusion(queries, memory))


@pytest.mark.parametrize("kept", ["distill_feature", "distill_relation"])
def test_student_stage_with_one_distillation_term_still_runs_the_teacher(kept):
    dropped = ({"distill_feature", "distill_relation"} - {kept}).pop()
    tester = ModelTester("lcr2s", **{f"{dropped}_loss_weight": 0.0})
    model = tester.model()
    model.start_stage("student")
    assert set(model(**tester.inputs()).losses) == {"student_align", "student_id", kept}


def test_student_stage_without_distillation_does_not_run_the_teacher():
    tester = ModelTester("lcr2s", distill_feature_loss_weight=0.0, distill_relation_loss_weight=0.0)
    model = tester.model()
    model.start_stage("student")
    calls = []
    for fusion in model.fusion.values():
        fusion.register_forward_hook(lambda *_: calls.append(1))
    assert set(model(**tester.inputs()).losses) == {"student_align", "student_id"}
    assert calls == []


# ----------------------------------------------------------------------------- modeling/base.py
def test_identity_loss_errors_name_the_loss_the_weight_and_the_range():
    model = ModelTester("clip_reid").model(num_ids=0)
    features = torch.randn(4, model.config.embed_dim)
    with pytest.raises(ValueError, match=r"^id: the ID loss is on \(id_loss_weight=1.0\) but config.num_ids is 0; "
                                         r"set num_ids to the number of training identities or the weight to 0$"):
        model.identity_loss(None, features, features, torch.tensor([0, 0, 1, 1]))
    model = ModelTester("clip_reid").model()  # num_ids = 3
    for pids, shown in ([0, 1, 2, 3], "[0, 3]"), ([-1, 0, 1, 2], "[-1, 2]"):
        with pytest.raises(ValueError, match=rf"^id: pids must lie in \[0, num_ids=3\), got {re.escape(shown)}$"):
            model.identity_loss(model.id_classifier, features, features, torch.tensor(pids))
    assert model.identity_loss(model.id_classifier, features, features, torch.tensor([0, 1, 2, 2])) > 0


def test_forward_refuses_pids_of_another_batch_size_naming_both_shapes():
    tester = ModelTester("clip_reid")
    inputs = tester.inputs()  # a batch of 4
    inputs["pids"] = inputs["pids"][:2]
    with pytest.raises(ValueError, match=r"^pids must have shape \[batch=4\], got \[2\]$"):
        tester.model()(**inputs)


def test_forward_hands_its_own_arguments_to_the_loss_hook():
    """``compute_losses`` gets forward's inputs unchanged (methods whose losses read the text tokens need the
    attention mask), and the extra batch inputs."""
    tester = ModelTester("clip_reid")
    model, inputs = tester.model(), tester.inputs()
    received = {}

    def spy(features, pixel_values, input_ids, attention_mask, pids, **batch_inputs):
        received.update(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask, pids=pids,
                        **batch_inputs)
        return {}

    model.compute_losses = spy
    output = model(**inputs, extra=torch.tensor(1.5))
    assert set(received) == {"pixel_values", "input_ids", "attention_mask", "pids", "extra"}
    for name, value in inputs.items():
        assert received[name] is value, name
    assert received["extra"].item() == 1.5 and output.loss is None and output.losses == {}


# ----------------------------------------------------------------------------- data/readers.py
def test_non_utf8_annotation_error_gives_the_byte_the_line_and_the_rule(tmp_path):
    path = tmp_path / "data.json"
    path.write_bytes(b'[\n {"id": 1},\n "caf\xe9"]')  # byte 19 on line 3: latin-1, not UTF-8
    message = f"{path}: not UTF-8 text (byte 19, line 3: invalid continuation byte); annotation files must be UTF-8 JSON"
    with pytest.raises(DatasetFormatError, match=f"^{re.escape(message)}$"):
        read_json_records(path)


@pytest.mark.parametrize("text, expected", [
    (" \n[ ]\n", []), ("[]", []), ("[1,2,3]", [1, 2, 3]), ('[{"a": 1}]', [{"a": 1}]), ('\t[ {"a": 1} , 2 ]', [{"a": 1}, 2]),
])
def test_json_records_are_read_with_or_without_whitespace_around_the_brackets(tmp_path, text, expected):
    path = tmp_path / "data.json"
    path.write_text(text, encoding="utf-8")
    assert read_json_records(path) == expected


def test_only_json_whitespace_is_skipped_before_the_list(tmp_path):
    path = tmp_path / "data.json"
    path.write_text("X[]", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="expected a list of records at the top level"):
        read_json_records(path)


class _StopReading(Exception):
    """Raised by the fake reader to stop reading at a chosen record."""


@pytest.mark.parametrize("num_records", [4999, 5000])
def test_image_check_shows_a_named_progress_bar_from_5000_records(tmp_path, monkeypatch, num_records):
    records = [{"split": "train", "captions": ["a man"], "file_path": f"{i}.jpg", "id": i} for i in range(num_records)]
    (tmp_path / "reid_raw.json").write_text(json.dumps(records), encoding="utf-8")
    seen = {}

    def fake_tqdm(iterable, **kwargs):
        seen.update(kwargs, count=len(iterable))
        raise _StopReading

    monkeypatch.setattr(readers, "tqdm", fake_tqdm)
    with pytest.raises(_StopReading):
        read_raw_dataset("cuhk-pedes", tmp_path)
    assert seen == {"desc": "cuhk-pedes: checking images", "unit": "img", "disable": num_records < 5000,
                    "count": num_records}


@pytest.mark.parametrize("image_path", ["/etc/passwd", "../outside.jpg", "a/../../outside.jpg"])
def test_an_image_path_outside_the_image_folder_is_refused_by_name(image_path):
    fmt = RAW_FORMATS["cuhk-pedes"]
    record = {"split": "train", "captions": ["a man"], fmt.path_field: image_path, "id": 1}
    message = (f"data.json: record 4: field '{fmt.path_field}' is {image_path!r}, which points outside "
               f"{fmt.image_dir}/ of the dataset root; image paths must stay inside it")
    with pytest.raises(DatasetFormatError, match=f"^{re.escape(message)}$"):
        parse_record(record, 4, "data.json", fmt)


@pytest.mark.parametrize("value, expected", [(7, 7), (3.0, 3), ("12", 12), (" 12 ", 12), ("-5", -5), (-5, -5)])
def test_integer_ids_are_read_from_ints_integral_floats_and_digit_strings(value, expected):
    parsed = _parse_id(value, "here")
    assert parsed == expected and type(parsed) is int


@pytest.mark.parametrize("value", ["5-", "X5", "1.5", "", "-", 2.5, True, None])
def test_other_ids_are_refused(value):
    with pytest.raises(DatasetFormatError, match=f"^here: field 'id' is {re.escape(repr(value))}, which is not an integer"):
        _parse_id(value, "here")


def test_data_after_the_list_and_a_missing_comma_are_named_with_record_and_line(tmp_path):
    path = tmp_path / "data.json"
    path.write_text("[1] x", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=f"^{re.escape(str(path))}: malformed JSON: unexpected data after the list of records$"):
        read_json_records(path)
    path.write_text("\n[1,\n 2\n 3]\n\n", encoding="utf-8")  # '3' (line 4) follows record 1 without a comma
    with pytest.raises(DatasetFormatError, match=f"^{re.escape(str(path))}: malformed JSON after record 1 \\(line 4\\): expected ',' or '\\]'$"):
        read_json_records(path)


def test_bad_images_are_named_counted_in_a_warning_and_the_dataset_summarised(tmp_path, caplog):
    records = make_release(tmp_path, "cuhk-pedes")
    (tmp_path / "imgs" / records[1]["file_path"]).unlink()
    (tmp_path / "imgs" / records[2]["file_path"]).unlink()
    message = (f"{tmp_path / 'reid_raw.json'}: record 1: image {tmp_path / 'imgs' / records[1]['file_path']} is missing"
               " (pass skip_bad_images=True to drop such records)")
    with pytest.raises(DatasetFormatError, match=f"^{re.escape(message)}$"):
        read_raw_dataset("cuhk-pedes", tmp_path)
    with caplog.at_level(logging.INFO, logger="tireid_hf.data.readers"):
        dataset = read_raw_dataset("cuhk-pedes", tmp_path, skip_bad_images=True)
    logged = [record.getMessage() for record in caplog.records if record.name == "tireid_hf.data.readers"]
    assert logged == ["cuhk-pedes: skipped 2 records with a missing or undecodable image", summarize("cuhk-pedes", dataset)]


# ----------------------------------------------------------------------------- training/checkpoints.py
def test_corrupt_progress_file_error_names_the_file_and_the_decoder_error(tmp_path):
    (tmp_path / "progress.json").write_text('{"method": ', encoding="utf-8")
    message = (f"{tmp_path / 'progress.json'} is truncated or corrupt (JSONDecodeError: Expecting value: line 1 column 12 "
               "(char 11)); resume from an earlier checkpoint (--resume_from_checkpoint FOLDER)")
    with pytest.raises(CheckpointError, match=f"^{re.escape(message)}$"):
        TrainingProgress.load(tmp_path)


def test_corrupt_manifest_and_missing_file_errors_name_them(tmp_path):
    (tmp_path / "checkpoint_files.json").write_text("{", encoding="utf-8")
    message = (f"{tmp_path / 'checkpoint_files.json'} is corrupt (Expecting property name enclosed in double quotes: "
               "line 1 column 2 (char 1)); resume from an earlier checkpoint")
    with pytest.raises(CheckpointError, match=f"^{re.escape(message)}$"):
        verify_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    write_manifest(tmp_path)
    verify_checkpoint(tmp_path)  # complete: no error
    (tmp_path / "model.safetensors").unlink()
    message = (f"checkpoint {tmp_path}: {tmp_path / 'model.safetensors'} is missing; resume from an earlier checkpoint "
               "(--resume_from_checkpoint FOLDER) or start again")
    with pytest.raises(CheckpointError, match=f"^{re.escape(message)}$"):
        verify_checkpoint(tmp_path)


def test_resume_from_latest_without_a_checkpoint_names_the_folder(tmp_path):
    checkpoints = CheckpointManager(tmp_path / "checkpoints", None, 0)
    message = f"resume_from_checkpoint latest: no complete checkpoint under {tmp_path / 'checkpoints'}"
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(message)}$"):
        checkpoints.resolve("latest")


def test_resume_from_a_folder_that_is_not_a_checkpoint_names_it(tmp_path):
    message = f"resume_from_checkpoint: {tmp_path} is not a checkpoint folder (no progress.json)"
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(message)}$"):
        CheckpointManager(tmp_path / "checkpoints", None, 0).resolve(str(tmp_path))


def test_training_progress_counts_epochs_and_stages_as_the_loop_resumes_them():
    """What a resume reads back: an epoch ends at batch 0 of the next one (no batch of the next epoch is
    skipped), a stage starts at epoch 0 without a schedule state, and the sampler's epoch number is
    stage * 1,000,000 + epoch (the checkpoints of earlier runs resume with the same batch orders)."""
    progress = TrainingProgress(method="clip_reid", epoch=3, batch_in_epoch=6, stage_step=20, scheduler_state={"a": 1})
    progress.end_epoch()
    assert (progress.epoch, progress.batch_in_epoch) == (4, 0)
    assert progress.sampler_epoch() == 4
    progress.start_stage(2)
    assert (progress.stage_index, progress.epoch, progress.batch_in_epoch, progress.stage_step,
            progress.scheduler_state) == (2, 0, 0, 0, None)
    progress.end_epoch()
    assert progress.sampler_epoch() == 2_000_001


def test_train_logs_are_recorded_with_stage_epoch_and_step():
    progress = TrainingProgress(method="clip_reid", stage_index=1, epoch=2, global_step=7)
    assert math.isnan(progress.last_train_loss())  # no train log yet
    progress.record_train({"train/loss": 0.5})
    assert progress.history == [{"kind": "train", "stage": 1, "epoch": 2, "step": 7, "train/loss": 0.5}]
    assert progress.last_train_loss() == 0.5


def test_validations_are_recorded_and_only_a_strictly_better_final_stage_one_becomes_best():
    progress = TrainingProgress(method="clip_reid", stage_index=1, epoch=0, global_step=3)
    assert progress.record_validation({"R1": 50.0}, "R1", consider_for_best=True)
    first = {"kind": "validation", "stage": 1, "epoch": 0, "step": 3, "metrics": {"R1": 50.0}}
    assert progress.history == [first] and progress.best == first
    progress.epoch, progress.global_step = 1, 6
    assert not progress.record_validation({"R1": 50.0}, "R1", consider_for_best=True)  # a tie keeps the earlier
    assert not progress.record_validation({"R1": 90.0}, "R1", consider_for_best=False)
    assert progress.best == first and len(progress.history) == 3
    assert progress.record_validation({"R1": 60.0}, "R1", consider_for_best=True) and progress.best["metrics"] == {"R1": 60.0}


class _Schedule:
    """Stands for the learning-rate scheduler: ``CheckpointManager.save`` stores its ``state_dict()``."""

    def __init__(self, step: int):
        self.step = step

    def state_dict(self) -> dict:
        return {"last_epoch": self.step, "base_lrs": [0.1]}


ACCELERATE_FILES = ["model.safetensors", "optimizer.bin", "random_states_0.pkl"]  # what save_state writes here
CHECKPOINT_FILES = sorted([*ACCELERATE_FILES, "checkpoint_files.json", "progress.json"])


@pytest.fixture
def accelerator():
    """A CPU Accelerator with a prepared 3 -> 2 linear model and its SGD optimizer (what save_state saves)."""
    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.1))
    return accelerator


def _save(manager: CheckpointManager, step: int, **fields) -> Path:
    return manager.save(TrainingProgress(method="clip_reid", global_step=step, **fields), _Schedule(step))


def _names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def _digest(path: Path) -> dict:
    return {"bytes": len(path.read_bytes()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


@pytest.mark.parametrize("limit, kept", [(-1, [2, 9, 10]), (0, [2, 9, 10]), (1, [10]), (2, [9, 10]), (3, [2, 9, 10])])
def test_checkpoint_save_keeps_the_newest_limit_complete_checkpoints(tmp_path, accelerator, limit, kept):
    """Steps 2, 9, 10 saved: a ``limit`` of 0 or less keeps all (as ``save_total_limit`` in transformers' Trainer),
    otherwise the newest ``limit`` by step number (9 before 10)."""
    root = tmp_path / "checkpoints"
    manager = CheckpointManager(root, accelerator, limit)
    for step in (2, 9, 10):
        assert _save(manager, step) == root / f"checkpoint-{step}"
    assert _names(root) == sorted(f"checkpoint-{step}" for step in kept)  # nothing .tmp or .deleting left
    assert manager.completed() == [root / f"checkpoint-{step}" for step in kept]
    for step in kept:
        folder = root / f"checkpoint-{step}"
        assert _names(folder) == CHECKPOINT_FILES
        verify_checkpoint(folder)
        assert TrainingProgress.load(folder).global_step == step


def test_checkpoint_saved_again_at_the_same_step_replaces_the_earlier_one(tmp_path, accelerator):
    root = tmp_path / "checkpoints"
    manager = CheckpointManager(root, accelerator, 0)
    _save(manager, 4, epoch=1)
    _save(manager, 4, epoch=2)  # a run resumed from an earlier checkpoint reaches step 4 again
    assert _names(root) == ["checkpoint-4"]
    assert TrainingProgress.load(root / "checkpoint-4").epoch == 2


def _make_leftovers(root: Path) -> None:
    """What kills leave: a half-written save, a half-done pruning, a checkpoint folder without progress file."""
    (root / "checkpoint-3.tmp").mkdir()
    (root / "checkpoint-3.tmp" / "model.safetensors").write_bytes(b"half")
    (root / "checkpoint-1.deleting").mkdir()
    (root / "checkpoint-1.deleting" / "progress.json").write_text("{}")
    (root / "checkpoint-5").mkdir()
    (root / "checkpoint-5" / "model.safetensors").write_bytes(b"no progress file")
    (root / "checkpoint-6.tmp").write_bytes(b"a file")


def test_checkpoint_leftovers_are_removed_at_the_next_save_and_by_remove_leftovers(tmp_path, accelerator):
    root = tmp_path / "checkpoints"
    manager = CheckpointManager(root, accelerator, 0)
    absent = CheckpointManager(tmp_path / "absent", accelerator, 0)
    absent.remove_leftovers()  # no folder yet: nothing to do, nothing created
    assert absent.completed() == [] and not (tmp_path / "absent").exists()
    _save(manager, 2)
    (root / "notes.txt").write_text("not a checkpoint")
    (root / "best").mkdir()
    (root / "best" / "progress.json").write_text("{}")
    _make_leftovers(root)
    manager.remove_leftovers()
    assert _names(root) == ["best", "checkpoint-2", "notes.txt"]
    _make_leftovers(root)
    _save(manager, 7)
    assert _names(root) == ["best", "checkpoint-2", "checkpoint-7", "notes.txt"]
    assert _names(root / "checkpoint-2") == CHECKPOINT_FILES
    verify_checkpoint(root / "checkpoint-2")


def test_completed_checkpoints_are_ordered_by_step_and_other_names_ignored(tmp_path):
    root = tmp_path / "checkpoints"
    for name in ("checkpoint-10", "checkpoint-9", "checkpoint-100", "checkpoint-9.tmp", "checkpoint-x",
                 "best", "xcheckpoint-12", "checkpoint-12.deleting"):
        (root / name).mkdir(parents=True)
        (root / name / "progress.json").write_text("{}")
    (root / "checkpoint-11").mkdir()  # no progress file: not complete
    manager = CheckpointManager(root, None, 0)
    assert manager.completed() == [root / "checkpoint-9", root / "checkpoint-10", root / "checkpoint-100"]
    assert manager.resolve("latest") == root / "checkpoint-100"


def test_manifest_records_size_and_sha256_of_every_file_but_itself_and_the_progress_file(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"\x00\x01\x02")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_bytes(b"hello")
    (tmp_path / "progress.json").write_text("{}")
    (tmp_path / "checkpoint_files.json").write_text("{}")  # an earlier manifest is not recorded in the new one
    write_manifest(tmp_path)
    expected = {"a.bin": {"bytes": 3, "sha256": hashlib.sha256(b"\x00\x01\x02").hexdigest()},
                "sub/b.txt": {"bytes": 5, "sha256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"}}
    assert (tmp_path / "checkpoint_files.json").read_text() == json.dumps(expected, indent=1)  # readable, one key a line
    verify_checkpoint(tmp_path)


def test_saved_checkpoint_manifest_lists_every_accelerate_file_and_verifies(tmp_path, accelerator):
    folder = _save(CheckpointManager(tmp_path, accelerator, 0), 3)
    manifest = json.loads((folder / "checkpoint_files.json").read_text())
    assert manifest == {name: _digest(folder / name) for name in ACCELERATE_FILES}
    verify_checkpoint(folder)


def test_training_progress_save_load_round_trip(tmp_path):
    progress = TrainingProgress(method="lcr2s", stage_index=1, epoch=3, batch_in_epoch=2, stage_step=14, global_step=40,
                                best={"kind": "validation", "metrics": {"R1": 61.5}},
                                history=[{"kind": "train", "train/loss": 1.25}], scheduler_state={"last_epoch": 40},
                                train_runtime_seconds=12.5, loss_window={"train/loss": [1.0, 1.5]})
    progress.save(tmp_path)
    fields = dataclasses.asdict(progress)
    assert (tmp_path / "progress.json").read_text() == json.dumps(fields, indent=1)  # editable by hand
    assert dataclasses.asdict(TrainingProgress.load(tmp_path)) == fields


def test_checkpoint_kill_points_are_named_and_called_with_the_step_in_order(tmp_path, accelerator, monkeypatch):
    """The fault tests kill train.py at these names (tests/test_faults.py): each is reached with the global step,
    at the state documented in faults.py (the complete ``.tmp`` folder not renamed yet; an old checkpoint renamed
    ``*.deleting`` and not deleted yet)."""
    root = tmp_path / "checkpoints"
    calls = []

    def record(name, step=None):
        calls.append((name, step, _names(root)))
        if name == "checkpoint_written":
            assert _names(root / f"checkpoint-{step}.tmp") == CHECKPOINT_FILES

    monkeypatch.setattr(checkpoints_module, "kill_point", record)
    manager = CheckpointManager(root, accelerator, 1)
    _save(manager, 3)
    _save(manager, 5)  # prunes checkpoint-3
    _save(manager, 5)  # replaces checkpoint-5
    assert calls == [("checkpoint_written", 3, ["checkpoint-3.tmp"]),
                     ("checkpoint_written", 5, ["checkpoint-3", "checkpoint-5.tmp"]),
                     ("checkpoint_pruning", 5, ["checkpoint-3.deleting", "checkpoint-5"]),
                     ("checkpoint_written", 5, ["checkpoint-5", "checkpoint-5.tmp"]),
                     ("checkpoint_pruning", 5, ["checkpoint-5.deleting", "checkpoint-5.tmp"])]
    assert _names(root) == ["checkpoint-5"]


def test_checkpoint_progress_file_records_the_schedule_state_and_the_runtime(tmp_path, accelerator, monkeypatch):
    """runtime = the earlier processes' time + this process' time since its clock started (a fake clock)."""
    now = [100.0]
    monkeypatch.setattr(checkpoints_module, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    progress = TrainingProgress(method="clip_reid", global_step=4, train_runtime_seconds=5.0)  # resumed at 5 s
    now[0] = 112.5
    folder = CheckpointManager(tmp_path, accelerator, 0).save(progress, _Schedule(4))
    assert (progress.scheduler_state, progress.train_runtime_seconds) == ({"last_epoch": 4, "base_lrs": [0.1]}, 17.5)
    now[0] = 200.0
    resumed = TrainingProgress.load(folder)
    assert (resumed.scheduler_state, resumed.train_runtime_seconds) == ({"last_epoch": 4, "base_lrs": [0.1]}, 17.5)
    now[0] = 210.0
    resumed.update_runtime()
    assert resumed.train_runtime_seconds == 27.5


# ----------------------------------------------------------------------------- training/loop.py: the resume path
def test_resume_point_of_a_new_run_is_nothing_and_a_fresh_progress(tmp_path, accelerator):
    manager = CheckpointManager(tmp_path / "checkpoints", accelerator, 0)
    _save(manager, 4)  # a checkpoint that is NOT resumed from
    for spec in (None, ""):
        folder, progress = loop._resume_point(manager, spec, "cada")
        assert folder is None and progress == TrainingProgress(method="cada")


def test_resume_point_is_the_named_or_latest_checkpoint_with_its_progress(tmp_path, accelerator):
    manager = CheckpointManager(tmp_path / "checkpoints", accelerator, 0)
    second, ninth = _save(manager, 2), _save(manager, 9)
    folder, progress = loop._resume_point(manager, "latest", "clip_reid")
    assert (folder, progress.global_step) == (ninth, 9)
    folder, progress = loop._resume_point(manager, str(second), "clip_reid")
    assert (folder, progress.global_step, progress.method) == (second, 2, "clip_reid")


def test_resume_point_refuses_another_methods_checkpoint_and_an_altered_one(tmp_path, accelerator):
    manager = CheckpointManager(tmp_path / "checkpoints", accelerator, 0)
    folder = _save(manager, 3)
    with pytest.raises(CheckpointError) as error:
        loop._resume_point(manager, "latest", "cada")
    assert str(error.value) == f"resume_from_checkpoint {folder} is a 'clip_reid' run, not 'cada'"
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes: only the manifest's sha256 can tell
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors"):
        loop._resume_point(manager, "latest", "clip_reid")


@pytest.mark.parametrize("first, resumed, plan", [
    (0, False, [(0, ["teacher"], False), (1, ["student"], False)]),
    (0, True, [(0, ["teacher"], True), (1, ["student"], False)]),
    (1, True, [(1, ["teacher", "student"], True)]),  # the student's modules exist after both starts
    (1, False, [(1, ["student"], False)]),
])
def test_stage_plan_replays_the_earlier_stage_starts_only_for_the_resumed_stage(first, resumed, plan):
    assert loop._stage_plan(["teacher", "student"], first, resumed) == plan


@pytest.mark.parametrize("num_batches, accumulation, epochs, max_steps, eval_epochs, budget", [
    (10, 3, 2.5, -1, 0.5, (4, 10, 2)),  # ceil(10/3) = 4 steps an epoch; ceil(2.5 * 4); round(0.5 * 4)
    (10, 1, 1.25, -1, 1, (10, 13, 10)),  # ceil(12.5) = 13
    (10, 3, 60, 7, 0.5, (4, 7, 2)),  # max_steps > 0 overrides the epochs
    (5, 1, 1, 0, 0.7, (5, 5, 4)),  # max_steps 0 does not; round(3.5) = 4
    (5, 1, 1, -1, 0.05, (5, 5, 1)),  # round(0.25) = 0: validate every step, not never
    (5, 1, 1, 1, 1, (5, 1, 5)),  # one step
])
def test_stage_budget_against_hand_computed_steps(num_batches, accumulation, epochs, max_steps, eval_epochs, budget):
    args = SimpleNamespace(gradient_accumulation_steps=accumulation, num_train_epochs=epochs, max_steps=max_steps,
                           eval_epochs=eval_epochs)
    assert loop._stage_budget(num_batches, args) == budget


@pytest.mark.parametrize("step, every, total, due", [(4, 2, 10, True), (5, 2, 10, False), (9, 3, 10, True),
                                                      (10, 3, 10, True), (7, 3, 10, False), (1, 1, 10, True)])
def test_periodic_events_fall_every_n_steps_and_on_the_last(step, every, total, due):
    assert loop._due(step, every, total) is due


@pytest.mark.parametrize("batch_in_epoch, num_batches, complete", [(5, 6, False), (6, 6, True), (0, 6, False)])
def test_epoch_is_complete_after_its_last_batch(batch_in_epoch, num_batches, complete):
    assert loop._epoch_complete(batch_in_epoch, num_batches) is complete


def test_restore_state_loads_weights_optimizer_moments_and_the_schedule(tmp_path):
    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model, optimizer = accelerator.prepare(model, optimizer)

    def step():
        model(torch.randn(4, 3)).square().sum().backward()
        optimizer.step()
        optimizer.zero_grad()

    step()
    accelerator.save_state(str(tmp_path / "checkpoint"))
    saved_weights = {key: value.clone() for key, value in model.state_dict().items()}
    saved_momentum = optimizer.state_dict()["state"][0]["momentum_buffer"].clone()
    step()
    loaded = []
    scheduler = SimpleNamespace(load_state_dict=loaded.append)
    progress = TrainingProgress(method="clip_reid", scheduler_state={"last_epoch": 7, "base_lrs": [0.1]})
    loop._restore_state(accelerator, scheduler, progress, tmp_path / "checkpoint")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, saved_weights[key], rtol=0, atol=0)
    torch.testing.assert_close(optimizer.state_dict()["state"][0]["momentum_buffer"], saved_momentum, rtol=0, atol=0)
    assert loaded == [{"last_epoch": 7, "base_lrs": [0.1]}]


def _finished(output: Path, best: dict, history: list) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / output_folder.RESULTS_FILE).write_text(json.dumps({"best_validation": best, "history": history}), encoding="utf-8")


def test_finished_results_are_this_runs_results_json_only(tmp_path):
    best = {"step": 6, "metrics": {"t2i/R1": 40.0}}
    progress = TrainingProgress(method="clip_reid", best=best, history=[{"kind": "validation"}])
    assert output_folder.finished_results(tmp_path, progress) is None  # no results.json
    _finished(tmp_path, best, [])
    assert output_folder.finished_results(tmp_path, progress) == {"best_validation": best, "history": []}
    _finished(tmp_path, {"step": 6, "metrics": {"t2i/R1": 41.0}}, [])  # another run's
    assert output_folder.finished_results(tmp_path, progress) is None
    (tmp_path / output_folder.RESULTS_FILE).write_text("{not json", encoding="utf-8")
    assert output_folder.finished_results(tmp_path, progress) is None
    (tmp_path / output_folder.RESULTS_FILE).write_bytes(b'{"best_validation": "\xff"}')
    assert output_folder.finished_results(tmp_path, progress) is None


def test_best_model_folder_is_best_else_the_finished_run_unless_nothing_was_trained(tmp_path):
    best, history = {"step": 6, "metrics": {"t2i/R1": 40.0}}, [{"kind": "validation", "step": 6}]
    progress = TrainingProgress(method="clip_reid", best=best, history=list(history))
    with pytest.raises(FileNotFoundError) as error:  # neither a best model nor this run's results
        output_folder.best_model_folder(tmp_path, progress)
    assert str(error.value) == (f"{tmp_path / 'best'}: the best model of this run is missing, and {tmp_path} holds "
                                "another model; start the run again with --overwrite_output_dir")
    _finished(tmp_path, best, history)
    assert output_folder.best_model_folder(tmp_path, progress) is None  # finished, nothing trained since
    progress.history.append({"kind": "train", "step": 8})
    assert output_folder.best_model_folder(tmp_path, progress) == tmp_path  # trained on, no new best
    (tmp_path / "best").mkdir()
    assert output_folder.best_model_folder(tmp_path, progress) == tmp_path / "best"


def _output_args(output: Path, resume=None, overwrite=False):
    return SimpleNamespace(output_dir=str(output), resume_from_checkpoint=resume, overwrite_output_dir=overwrite)


def test_check_output_dir_refuses_a_file_and_another_run_unless_resumed_or_overwritten(tmp_path):
    output_folder.check_output_dir(_output_args(tmp_path / "new"))  # does not exist yet
    (tmp_path / "empty").mkdir()
    output_folder.check_output_dir(_output_args(tmp_path / "empty"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError) as error:
        output_folder.check_output_dir(_output_args(tmp_path / "file", resume="latest", overwrite=True))
    assert str(error.value) == f"output_dir {tmp_path / 'file'} is a file, not a folder: choose another --output_dir"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text("{}")
    with pytest.raises(FileExistsError) as error:
        output_folder.check_output_dir(_output_args(tmp_path / "run"))
    assert str(error.value) == (f"output_dir {tmp_path / 'run'} is not empty (another run?): pass --overwrite_output_dir "
                                "to replace it or --resume_from_checkpoint latest to continue it")
    output_folder.check_output_dir(_output_args(tmp_path / "run", resume="latest"))
    output_folder.check_output_dir(_output_args(tmp_path / "run", overwrite=True))


def _tree(folder: Path) -> dict:
    """Every file under ``folder`` (relative path -> text), folders as "/"-ended names."""
    return {str(path.relative_to(folder)) + ("/" if path.is_dir() else ""): "" if path.is_dir() else path.read_text()
            for path in sorted(folder.rglob("*"))}


def test_start_over_deletes_the_run_state_and_journals_the_previous_models_files(tmp_path, capsys):
    for name in ("checkpoints/checkpoint-3", "logs/tireid", "best"):
        (tmp_path / name).mkdir(parents=True)
    for name, text in {"training_args.yaml": "a", "config.json": "old", "results.json": "old", "card/README.md": "x"}.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / output_folder._PREVIOUS_RUN_FILES).write_text(json.dumps({"files": ["older.txt"], "finishing": False}))
    output_folder.start_over(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["card", "config.json", "results.json", "training_args.yaml", output_folder._PREVIOUS_RUN_FILES])
    assert json.loads((tmp_path / output_folder._PREVIOUS_RUN_FILES).read_text()) == {
        "files": ["card", "config.json", "older.txt", "results.json"], "finishing": False}
    assert capsys.readouterr().out == (f"output_dir {tmp_path}: the previous run's model and results stay until this "
                                       "run replaces them\n")


def test_start_over_of_a_folder_without_a_journal_starts_one(tmp_path):
    (tmp_path / "model.safetensors").write_text("old")
    output_folder.start_over(tmp_path)
    assert json.loads((tmp_path / output_folder._PREVIOUS_RUN_FILES).read_text()) == {
        "files": ["model.safetensors"], "finishing": False}


def test_remove_interrupted_saves_deletes_only_best_temporaries(tmp_path):
    for name in (".best.tmp-abc1", ".best.old-x2y", "best", ".logs.tmp-abc", ".bestx", "checkpoints"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_text("x")
    output_folder.remove_interrupted_saves(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == [".bestx", ".logs.tmp-abc", "best", "checkpoints"]


def test_remove_interrupted_saves_goes_on_past_what_it_cannot_delete(tmp_path):
    (tmp_path / ".best.tmp-file").write_text("a file, not a save's folder")  # rmtree fails on it
    (tmp_path / ".best.tmp-folder").mkdir()
    output_folder.remove_interrupted_saves(tmp_path)  # a clean-up failure must not stop the run
    assert not (tmp_path / ".best.tmp-folder").exists()


def _finished_best(output: Path, files: dict) -> None:
    (output / "best").mkdir(parents=True)
    for name, text in files.items():
        (output / "best" / name).write_text(text)


def _previous_run_with_a_finished_model(output: Path) -> dict:
    """output holds a previous run's model (config.json, results.json, README.md, old.bin, a folder, a
    dangling link), its journal (written by ``_start_over``) and the new run's finished model in best/."""
    new = {"config.json": "new", "model.safetensors": "new", "results.json": "new", "zz.json": "new"}
    for name in ("config.json", "results.json", "README.md", "old.bin"):
        (output / name).write_text("old")
    (output / "old_folder").mkdir()
    (output / "old_folder" / "f").write_text("old")
    (output / "old_link").symlink_to(output / "nowhere")  # a dangling link is a file to delete too
    (output / "checkpoints").mkdir()
    (output / output_folder._PREVIOUS_RUN_FILES).write_text(json.dumps(
        {"files": ["README.md", "config.json", "old.bin", "old_folder", "old_link", "results.json"], "finishing": False}))
    _finished_best(output, new)
    return new


def test_final_move_puts_the_new_model_in_place_results_last_and_deletes_the_previous_runs_files(tmp_path, monkeypatch):
    new = _previous_run_with_a_finished_model(tmp_path)
    seen = []  # output's model files after each move
    monkeypatch.setattr(output_folder, "kill_point", lambda name: seen.append((name, {
        path.name: path.read_text() for path in tmp_path.iterdir() if path.is_file() and path.name in new})))
    output_folder.complete_final_move(tmp_path)
    assert _tree(tmp_path) == {"checkpoints/": "", **new}
    assert [name for name, _ in seen] == ["final_move"] * 4
    # the files the new model replaces are gone before the first move; results.json comes last
    assert [sorted(files.values()) for _, files in seen] == [["new"] * count for count in (1, 2, 3, 4)]
    assert ["results.json" in files for _, files in seen] == [False, False, False, True]


def test_final_move_deletes_the_replaced_results_json_before_the_replaced_model_files(tmp_path, monkeypatch):
    """A kill among the deletions must not leave the previous results.json beside a half-deleted model."""
    _previous_run_with_a_finished_model(tmp_path)
    unlinked, unlink = [], Path.unlink

    def recording_unlink(path, missing_ok=False):
        if path.parent == tmp_path:
            unlinked.append(path.name)
        unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", recording_unlink)
    output_folder.complete_final_move(tmp_path)
    assert unlinked[0] == "results.json" and sorted(unlinked[:4]) == [
        "config.json", "model.safetensors", "results.json", "zz.json"]


class _Killed(Exception):
    """Stands for a SIGKILL at a kill point."""


@pytest.mark.parametrize("moves_done", [0, 1, 2, 3])
def test_final_move_cut_short_is_completed_by_the_next_call(tmp_path, monkeypatch, moves_done):
    new = _previous_run_with_a_finished_model(tmp_path)
    calls = []

    def kill_after(name):
        calls.append(name)
        if len(calls) == moves_done + 1:
            raise _Killed

    monkeypatch.setattr(output_folder, "kill_point", kill_after)
    with pytest.raises(_Killed):
        output_folder.complete_final_move(tmp_path)
    assert not (tmp_path / "results.json").exists() or moves_done == 3  # the old one is gone at once
    monkeypatch.setattr(output_folder, "kill_point", lambda name: None)
    output_folder.complete_final_move(tmp_path)  # what the next run on output_dir does first
    assert _tree(tmp_path) == {"checkpoints/": "", **new}


def test_final_move_waits_for_a_finished_model_and_a_finishing_journal(tmp_path):
    journal = {"files": ["old.bin"], "finishing": False}
    (tmp_path / "old.bin").write_text("old")
    (tmp_path / output_folder._PREVIOUS_RUN_FILES).write_text(json.dumps(journal))
    _finished_best(tmp_path, {"config.json": "new"})  # no results.json yet: training goes on
    before = _tree(tmp_path)
    output_folder.complete_final_move(tmp_path)
    assert _tree(tmp_path) == before
    (tmp_path / output_folder._PREVIOUS_RUN_FILES).write_text(json.dumps({**journal, "finishing": True}))
    before = _tree(tmp_path)
    output_folder.complete_final_move(tmp_path)  # finishing, but best/ is not moved yet: keep the previous model
    assert _tree(tmp_path) == before
