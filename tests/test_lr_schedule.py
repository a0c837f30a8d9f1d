"""The learning-rate schedule of training/optim.py against IRRA's formula, written out here as the reference,
and against torch's own schedulers (TESTING.md, "The learning-rate schedule")."""

import json
import math

import pytest
import torch

from tireid_hf.training import TrainingArguments
from tireid_hf.training.optim import build_scheduler, lr_multiplier

S = torch.optim.lr_scheduler
# (total steps, warm-up steps, warm-up start factor, schedule type): warm-ups of 0, 1 and W steps, starts from
# 0, IRRA's 0.1 and 0.5, every schedule type
CASES = [(total, warmup, start, kind) for total in (1, 2, 10, 37) for warmup in (0, 1, 4) if warmup <= total
         for start in (0.0, 0.1, 0.5) for kind in ("cosine", "linear", "constant", "multistep")]
MILESTONES, DECAY = [3, 6, 20], 0.1


def irra_multiplier(step, total, warmup, start, kind):
    """f + (1 - f)(step + 1)/W during the warm-up, then the curve over p = (step - W) / max(1, total - W)."""
    if step < warmup:
        return start + (1 - start) * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return {"cosine": 0.5 * (1 + math.cos(math.pi * min(p, 1.0))), "linear": max(0.0, 1 - p), "constant": 1.0,
            "multistep": DECAY ** sum(milestone <= step for milestone in MILESTONES)}[kind]


def rates(optimizer, scheduler, steps):
    values = []
    for _ in range(steps):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


def sgd(lr=1.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def torch_schedule(optimizer, total, warmup, start, kind):
    """torch's chained form of the same schedule: LinearLR(f + (1 - f)/W -> 1 over W - 1 steps), then the curve."""
    rest = max(1, total - warmup)
    curve = {"cosine": lambda: S.CosineAnnealingLR(optimizer, T_max=rest),
             "linear": lambda: S.LinearLR(optimizer, 1.0, 0.0, total_iters=rest),
             "constant": lambda: S.ConstantLR(optimizer, factor=1.0, total_iters=0),
             "multistep": lambda: S.MultiStepLR(optimizer, [m - warmup for m in MILESTONES], DECAY)}[kind]()
    if warmup == 0:
        return curve
    warm_up = S.LinearLR(optimizer, start_factor=start + (1 - start) / warmup, total_iters=warmup - 1)
    return S.SequentialLR(optimizer, [warm_up, curve], milestones=[warmup])


@pytest.mark.parametrize("total, warmup, start, kind", CASES)
def test_schedule_is_irras_formula(total, warmup, start, kind):
    args = TrainingArguments(lr_scheduler_type=kind, warmup_epochs=warmup, warmup_start_factor=start,
                             lr_milestones_epochs=MILESTONES, lr_decay_factor=DECAY)
    optimizer = sgd()
    ours = rates(optimizer, build_scheduler(optimizer, args, total, steps_per_epoch=1), total)
    assert ours == [irra_multiplier(step, total, warmup, start, kind) for step in range(total)]
    assert ours == [lr_multiplier(step, total, warmup, kind, MILESTONES, DECAY, start) for step in range(total)]


@pytest.mark.parametrize("total, warmup, start, kind", CASES)
def test_torchs_chained_schedulers_agree_within_1e_12(total, warmup, start, kind):
    optimizer = sgd()
    theirs = rates(optimizer, torch_schedule(optimizer, total, warmup, start, kind), total)
    reference = [irra_multiplier(step, total, warmup, start, kind) for step in range(total)]
    assert max(abs(a - b) for a, b in zip(theirs, reference)) <= 1e-12


def test_torchs_chained_schedulers_differ_in_the_last_bits():
    """Each chained step multiplies the previous rate, so the rounding differs from the closed form."""
    optimizer = sgd(1e-3)
    theirs = rates(optimizer, torch_schedule(optimizer, 10, 4, 0.1, "cosine"), 10)
    optimizer = sgd(1e-3)
    ours = rates(optimizer, build_scheduler(optimizer, TrainingArguments(warmup_epochs=4, warmup_start_factor=0.1), 10, 1), 10)
    assert ours == [1e-3 * irra_multiplier(step, 10, 4, 0.1, "cosine") for step in range(10)]
    assert ours[6] == 0.00075 and theirs[6] == 0.0007500000000000001


def _resumed_rates(build, first_total, total, stop):
    """Rates of a run stopped at step ``stop`` of a ``first_total``-step schedule, its scheduler state
    written to JSON (as progress.json holds it), then resumed with a ``total``-step budget."""
    optimizer = sgd()
    scheduler = build(optimizer, first_total)
    rates(optimizer, scheduler, stop)
    state = json.loads(json.dumps(scheduler.state_dict()))
    optimizer = sgd()
    resumed = build(optimizer, total)
    optimizer.param_groups[0]["lr"] = scheduler.get_last_lr()[0]  # what the checkpoint's optimizer state holds
    resumed.load_state_dict(state)
    return rates(optimizer, resumed, total - stop)


def test_a_schedule_resumed_with_a_larger_budget_follows_the_new_budgets_curve():
    """``--max_steps 12`` on a checkpoint of an 8-step run taken after step 4: step 4 trains at the rate the
    checkpoint's optimizer holds, steps 5-11 on the 12-step curve. The state of a chained SequentialLR
    carries its curve's length (T_max), so it would keep the 8-step one."""
    args = TrainingArguments(warmup_epochs=3, warmup_start_factor=0.1)
    ours = _resumed_rates(lambda optimizer, total: build_scheduler(optimizer, args, total, 1), 8, 12, 4)
    assert ours == [irra_multiplier(4, 8, 3, 0.1, "cosine")] + [irra_multiplier(step, 12, 3, 0.1, "cosine")
                                                                 for step in range(5, 12)]
    theirs = _resumed_rates(lambda optimizer, total: torch_schedule(optimizer, total, 3, 0.1, "cosine"), 8, 12, 4)
    assert max(abs(a - b) for a, b in zip(theirs, ours)) > 0.01


def test_the_schedule_state_of_earlier_checkpoints_loads():
    """progress.json of checkpoints written by earlier versions holds a LambdaLR state: one step counter."""
    args = TrainingArguments(warmup_epochs=3, warmup_start_factor=0.1)
    optimizer = sgd()
    scheduler = build_scheduler(optimizer, args, 12, 1)
    scheduler.load_state_dict({"base_lrs": [1.0], "last_epoch": 4, "_step_count": 5, "_get_lr_called_within_step": False,
                               "_last_lr": [irra_multiplier(4, 12, 3, 0.1, "cosine")], "lr_lambdas": [None]})
    optimizer.step()
    scheduler.step()
    assert scheduler.get_last_lr() == [irra_multiplier(5, 12, 3, 0.1, "cosine")]
