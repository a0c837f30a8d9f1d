"""results.json's ``backbone_gradient_norms``: the gradient norm each weighted loss term sends into the
trainable ``clip`` parameters, measured on the training step's own forward before its backward, at each
stage's first step and its validation steps, without changing the training."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from tireid_hf.training import loop
from tireid_hf.training.checkpoints import PROGRESS_FILE, CheckpointError, TrainingProgress
from tireid_hf.training.gradient_norms import backbone_gradient_norms, backbone_parameters

from test_training_run import CONFIG, run


class TinyBackbone(nn.Module):
    """``clip``: one trainable weight theta = [1, 2] and one frozen weight; ``teacher_clip`` and
    ``head``: outside the backbone."""

    def __init__(self):
        super().__init__()
        self.clip = nn.Module()
        self.clip.weight = nn.Parameter(torch.tensor([1.0, 2.0]))
        self.clip.frozen = nn.Parameter(torch.tensor([5.0]), requires_grad=False)
        self.teacher_clip = nn.Linear(2, 1)
        self.head = nn.Parameter(torch.tensor(3.0))

    def losses(self) -> dict[str, torch.Tensor]:
        """With x = [3, 4], f = theta . x * frozen / 5 = 11:
        square = f^2, linear = f, detached = head * f.detach() (never reaches theta), teacher = a loss of
        ``teacher_clip`` alone, off = f (weight 0)."""
        f = (self.clip.weight * torch.tensor([3.0, 4.0])).sum() * self.clip.frozen[0] / 5
        return {"square": f**2, "linear": f, "detached": self.head * f.detach(),
                "teacher": self.teacher_clip(torch.ones(2)).sum(), "off": f}


WEIGHTS = {"square": 0.5, "linear": 2.0, "detached": 1.0, "teacher": 1.0, "off": 0.0}


def test_each_weighted_term_gets_the_norm_of_its_own_backbone_gradient():
    model = TinyBackbone()
    parameters = backbone_parameters(model)
    assert [tuple(parameter.shape) for parameter in parameters] == [(2,)]  # frozen and teacher_clip left out
    losses = model.losses()
    norms = backbone_gradient_norms(losses, WEIGHTS.get, parameters)
    # d(0.5 f^2)/d theta = f x = [33, 44] -> 55; d(2 f)/d theta = 2 x = [6, 8] -> 10; sum [39, 52] -> 65
    assert norms == {"terms": {"square": 55.0, "linear": 10.0, "detached": 0.0, "teacher": 0.0}, "total": 65.0}
    for name in ("square", "linear"):  # an independent autograd of each weighted term
        (gradient,) = torch.autograd.grad(WEIGHTS[name] * model.losses()[name], [model.clip.weight])
        assert norms["terms"][name] == pytest.approx(gradient.norm().item(), rel=1e-12)
    # nothing was written to .grad and the graph was kept: the step's backward gives its usual gradients
    assert model.clip.weight.grad is None and model.head.grad is None
    sum(WEIGHTS[name] * value for name, value in losses.items()).backward()
    torch.testing.assert_close(model.clip.weight.grad, torch.tensor([39.0, 52.0]), rtol=0, atol=0)
    assert model.head.grad.item() == 11.0


def test_a_backbone_with_no_trainable_parameter_gets_zero_norms():
    model = TinyBackbone()
    model.clip.weight.requires_grad_(False)
    norms = backbone_gradient_norms(model.losses(), WEIGHTS.get, backbone_parameters(model))
    assert norms == {"terms": {"square": 0.0, "linear": 0.0, "detached": 0.0, "teacher": 0.0}, "total": 0.0}


def test_measured_steps_are_the_first_and_the_validation_steps():
    assert [step for step in range(1, 21) if loop._measures_backbone(step, eval_every=6, total_steps=20)] == [1, 6, 12, 18, 20]


# LCR²S, two stages of 12 steps (two epochs of 6 batches), validation every 6 steps
LCR2S = {"method": "lcr2s", "model_config": {**CONFIG["model_config"], "fusion_num_heads": 2,
                                             "training_schedule": "two_stage"}}


def _final_weights(folder):
    return load_file(folder / "out" / "checkpoints" / "checkpoint-24" / "model.safetensors")


@pytest.mark.slow
def test_a_two_stage_run_records_every_stage_at_its_first_and_validation_steps_without_changing_training(
        tmp_path, monkeypatch):
    (tmp_path / "measured").mkdir(), (tmp_path / "unmeasured").mkdir()
    measured = run(tmp_path / "measured", "--max_steps", "12", "--save_steps", "12", **LCR2S)
    records = measured["backbone_gradient_norms"]
    assert [(record["stage"], record["step"], record["global_step"]) for record in records] == [
        ("teacher", 1, 1), ("teacher", 6, 6), ("teacher", 12, 12),
        ("student", 1, 13), ("student", 6, 18), ("student", 12, 24)]
    for record in records:
        stage = ["teacher", "student"].index(record["stage"])
        logs = [entry for entry in measured["history"] if entry["kind"] == "train" and entry["stage"] == stage]
        terms = {key[len("train/"):] for key in logs[0] if key.startswith("train/")} - {"loss", "samples_per_second"}
        assert set(record["terms"]) == terms  # every computed (non-zero weight) term of the stage
        assert all(math.isfinite(norm) and norm >= 0 for norm in record["terms"].values())
        assert record["total"] > 0
    # the measurement leaves the training bit-identical to a run without it
    monkeypatch.setattr(loop, "_measures_backbone", lambda step, eval_every, total_steps: False)
    unmeasured = run(tmp_path / "unmeasured", "--max_steps", "12", "--save_steps", "12", **LCR2S)
    assert unmeasured["backbone_gradient_norms"] == []
    measured_weights, unmeasured_weights = _final_weights(tmp_path / "measured"), _final_weights(tmp_path / "unmeasured")
    assert measured_weights.keys() == unmeasured_weights.keys()
    for name in measured_weights:
        torch.testing.assert_close(measured_weights[name], unmeasured_weights[name], rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_a_resumed_run_keeps_the_records_of_the_part_before_the_resume(tmp_path):
    run(tmp_path, "--max_steps", "6", "--save_steps", "6")
    resumed = run(tmp_path, "--max_steps", "12", "--save_steps", "6", "--resume_from_checkpoint", "latest")
    assert [(record["stage"], record["step"]) for record in resumed["backbone_gradient_norms"]] == [
        ("main", 1), ("main", 6), ("main", 12)]


RECORD = {"stage": "main", "step": 1, "global_step": 1, "terms": {"sdm": 1.5, "id": 0.0}, "total": 1.5}


@pytest.mark.parametrize("records", [[RECORD, {**RECORD, "step": 0}], [{**RECORD, "terms": {"sdm": "1.5"}}],
                                     [{key: value for key, value in RECORD.items() if key != "total"}], RECORD])
def test_progress_json_refuses_malformed_records_naming_the_field(tmp_path, records):
    TrainingProgress(method="clip_reid", backbone_gradient_norms=[RECORD]).save(tmp_path)
    assert TrainingProgress.load(tmp_path).backbone_gradient_norms == [RECORD]
    path = tmp_path / PROGRESS_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), "backbone_gradient_norms": records}))
    with pytest.raises(CheckpointError, match=f"^{path}: field 'backbone_gradient_norms' must be a list of records"):
        TrainingProgress.load(tmp_path)


def test_a_progress_json_without_records_loads_with_no_records(tmp_path):
    TrainingProgress(method="clip_reid").save(tmp_path)
    path = tmp_path / PROGRESS_FILE
    fields = json.loads(path.read_text())
    del fields["backbone_gradient_norms"]
    path.write_text(json.dumps(fields))
    assert TrainingProgress.load(tmp_path).backbone_gradient_norms == []
