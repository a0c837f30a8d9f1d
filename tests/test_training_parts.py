"""The training loop's parts: identity sampler, argument parsing, optimizer groups, schedule."""

from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tireid_hf.data.samplers import IdentityBatchSampler
from tireid_hf.training.arguments import TrainingArguments, parse_training_arguments
from tireid_hf.training.optim import lr_multiplier, parameter_groups
from tester import ModelTester

PIDS = [pid for pid in range(10) for _ in range(3 + pid % 4)]  # 10 identities with 3..6 samples


def test_batches_hold_p_identities_times_k_instances():
    sampler = IdentityBatchSampler(PIDS, batch_size=8, instances_per_identity=2, seed=1)
    for batch in sampler:
        assert len(batch) == 8
        counts = Counter(PIDS[index] for index in batch)
        assert len(counts) == 4 and set(counts.values()) == {2}


def test_every_sample_is_seen_each_epoch_and_epochs_differ():
    sampler = IdentityBatchSampler(PIDS, batch_size=6, instances_per_identity=3, seed=0)
    first = [index for batch in sampler for index in batch]
    assert set(first) == set(range(len(PIDS)))
    sampler.set_epoch(1)
    assert [index for batch in sampler for index in batch] != first
    sampler.set_epoch(0)
    assert [index for batch in sampler for index in batch] == first  # deterministic by (seed, epoch)


def test_an_identity_with_k_images_or_more_never_repeats_an_image_in_a_batch():
    # 5 images per identity, K = 4: the second group of each identity holds 1 image topped up with 3
    # others, which must be drawn from the 4 images not already in that group.
    pids = [pid for pid in range(6) for _ in range(5)]
    sampler = IdentityBatchSampler(pids, batch_size=8, instances_per_identity=4, seed=2)
    for epoch in range(10):
        sampler.set_epoch(epoch)
        for batch in sampler:
            assert len(set(batch)) == len(batch) == 8, (epoch, batch)


def test_an_identity_with_half_of_k_images_has_each_twice_in_its_group():
    # 2 images, K = 4: the top-up draws the 2 missing from the 2 images without replacement.
    sampler = IdentityBatchSampler([0, 0, 1, 1, 2, 2, 3, 3], batch_size=8, instances_per_identity=4, seed=5)
    for epoch in range(10):
        sampler.set_epoch(epoch)
        for batch in sampler:
            assert sorted(Counter(batch).values()) == [2] * 4, (epoch, batch)


def test_ranks_get_distinct_batches_covering_the_epoch_in_equal_numbers():
    world = 3
    ranks = [list(IdentityBatchSampler(PIDS, 4, 2, seed=3, num_replicas=world, rank=rank)) for rank in range(world)]
    everything = IdentityBatchSampler(PIDS, 4, 2, seed=3).epoch_batches()
    assert len({len(batches) for batches in ranks}) == 1
    padding = len(ranks[0]) * world - len(everything)
    assert 0 <= padding < world  # only wrap-around padding to equal step counts
    # step s of rank r is batch s * world + r of the whole epoch: distinct per rank, all covered
    interleaved = [batch for step in zip(*ranks) for batch in step]
    assert interleaved == everything + everything[:padding]


@st.composite
def sampler_setups(draw):
    """Random identity and image counts (arbitrary pid labels, samples in a random order), P, K and a
    world size with at least P identities."""
    instances = draw(st.integers(1, 4))
    identities = draw(st.integers(1, 4))
    images = draw(st.lists(st.integers(1, 9), min_size=identities, max_size=12))
    labels = draw(st.lists(st.integers(0, 10_000), min_size=len(images), max_size=len(images), unique=True))
    pids = draw(st.permutations([label for label, count in zip(labels, images) for _ in range(count)]))
    return pids, identities * instances, instances, draw(st.integers(0, 2**32 - 1)), draw(st.integers(1, 3))


@given(setup=sampler_setups(), epoch=st.integers(0, 2_000_000))
def test_property_sampler_batches_are_p_by_k_without_repeats_and_cover_the_epoch(setup, epoch):
    pids, batch_size, instances, seed, world = setup
    identities_per_batch = batch_size // instances
    sampler = IdentityBatchSampler(pids, batch_size, instances, seed=seed)
    sampler.set_epoch(epoch)
    batches = sampler.epoch_batches()
    samples_of = {pid: {index for index, other in enumerate(pids) if other == pid} for pid in set(pids)}
    groups = sum(-(-len(samples) // instances) for samples in samples_of.values())  # sum_i ceil(n_i / K)
    assert -(-groups // identities_per_batch) <= len(batches) <= groups
    for batch in batches:
        assert len(batch) == batch_size
        by_pid = {}
        for index in batch:
            by_pid.setdefault(pids[index], []).append(index)
        assert len(by_pid) == identities_per_batch and {len(group) for group in by_pid.values()} == {instances}
        for pid, group in by_pid.items():
            if len(samples_of[pid]) >= instances:
                assert len(set(group)) == instances, (pid, group)  # no image twice while the identity has K
            else:  # fewer than K: all of them, topped up by repeats, without replacement when there are enough
                assert set(group) == samples_of[pid]
                if 2 * len(samples_of[pid]) >= instances:
                    assert max(Counter(group).values()) <= 2, (pid, group)
    assert {index for batch in batches for index in batch} == set(range(len(pids)))  # every image, every epoch
    again = IdentityBatchSampler(pids, batch_size, instances, seed=seed)
    again.set_epoch(epoch)
    assert again.epoch_batches() == batches  # a function of (seed, epoch)
    ranks = [IdentityBatchSampler(pids, batch_size, instances, seed=seed, num_replicas=world, rank=rank)
             for rank in range(world)]
    for rank in ranks:
        rank.set_epoch(epoch)
    per_rank = [list(rank) for rank in ranks]
    assert len({len(steps) for steps in per_rank}) == 1
    interleaved = [batch for step in zip(*per_rank) for batch in step]
    assert interleaved == [batches[step % len(batches)] for step in range(len(interleaved))]
    assert len(batches) <= len(interleaved) < len(batches) + world


def test_ranks_get_the_same_number_of_steps_when_the_epoch_has_fewer_batches_than_half_the_world():
    # 1 batch for 3 ranks: padding must wrap around twice, or rank 2 gets no step and the others wait
    # for it forever in the gradient all-reduce.
    ranks = [list(IdentityBatchSampler([0, 0, 1, 1], 4, 2, seed=0, num_replicas=3, rank=rank)) for rank in range(3)]
    only = IdentityBatchSampler([0, 0, 1, 1], 4, 2, seed=0).epoch_batches()
    assert len(only) == 1 and ranks == [only, only, only]


def test_sampler_refuses_impossible_batches():
    with pytest.raises(ValueError, match="multiple of instances_per_identity"):
        IdentityBatchSampler(PIDS, batch_size=7, instances_per_identity=2)
    with pytest.raises(ValueError, match="distinct identities"):
        IdentityBatchSampler(PIDS, batch_size=40, instances_per_identity=2)
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\), got 2"):
        IdentityBatchSampler(PIDS, batch_size=4, instances_per_identity=2, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\), got -1"):
        IdentityBatchSampler(PIDS, batch_size=4, instances_per_identity=2, num_replicas=2, rank=-1)


def test_yaml_config_with_command_line_overrides(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("method: clip_reid\ndataset: synthetic\nlearning_rate: 0.001\nmodel_config:\n  temperature: 0.05\n"
                      "  id_loss_weight: 0.5\nlr_milestones_epochs: [2, 4]\n")
    model_args, data_args, args = parse_training_arguments(
        ["--config", str(config), "--max_steps", "20", "--model_config", '{"id_loss_weight": 0.0}'])
    assert args.max_steps == 20 and args.learning_rate == 0.001 and args.lr_milestones_epochs == [2, 4]
    assert model_args.model_config == {"temperature": 0.05, "id_loss_weight": 0.0}
    assert data_args.dataset == "synthetic"


@pytest.mark.parametrize("content, message", [
    ("methd: clip_reid\n", r"unknown key\(s\) \['methd'\]"),
    ("method: nope\n", "unknown method 'nope'"),
    ("model_config:\n  not_a_field: 1\n", r"has no field\(s\) \['not_a_field'\]"),
    ("dataset: cuhk-pedes\n", "needs --data_root"),
    ("lr_scheduler_type: steps\n", "lr_scheduler_type must be one of"),
])
def test_bad_configs_are_refused_naming_the_key(tmp_path, content, message):
    config = tmp_path / "bad.yaml"
    config.write_text(content)
    with pytest.raises(ValueError, match=message):
        parse_training_arguments(["--config", str(config)])


def test_parameter_groups_split_backbone_heads_and_decay():
    model = ModelTester("clip_reid").model()
    args = TrainingArguments(learning_rate=1e-5, head_learning_rate_multiplier=5.0, weight_decay=0.1)
    groups = {group["name"]: group for group in parameter_groups(model, args)}
    assert set(groups) == {"backbone", "backbone_no_decay", "heads", "heads_no_decay"}
    assert groups["heads"]["lr"] == pytest.approx(5e-5) and groups["backbone"]["lr"] == pytest.approx(1e-5)
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0 and groups["heads"]["weight_decay"] == 0.1
    assert any(p is model.id_classifier.weight for p in groups["heads"]["params"])
    assert any(p is model.id_classifier.bias for p in groups["heads_no_decay"]["params"])
    grouped = sum(len(group["params"]) for group in groups.values())
    assert grouped == sum(1 for p in model.parameters() if p.requires_grad)


def test_schedule_warms_up_linearly_then_follows_the_chosen_curve():
    assert [lr_multiplier(step, 10, 4, "cosine") for step in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_multiplier(4, 10, 4, "cosine") == pytest.approx(1.0)
    assert lr_multiplier(7, 10, 4, "cosine") == pytest.approx(0.5 * (1 + torch.cos(torch.tensor(torch.pi * 0.5)).item()))
    assert lr_multiplier(7, 10, 4, "linear") == pytest.approx(0.5)
    assert lr_multiplier(9, 10, 0, "multistep", milestones=[3, 6], decay_factor=0.1) == pytest.approx(0.01)
    assert lr_multiplier(5, 10, 0, "constant") == 1.0


@pytest.mark.parametrize("config", sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")),
                         ids=lambda path: path.stem)
def test_every_shipped_config_parses_and_builds_its_model_config(config):
    from tireid_hf.modeling import METHODS

    model_args, data_args, _ = parse_training_arguments(["--config", str(config), "--data_root", "/data/somewhere"])
    method, dataset = config.stem.rsplit("_", 1)
    assert (model_args.method, data_args.dataset) == (method, dataset)
    built = METHODS[method][0](**model_args.model_config)
    assert built.model_type == f"tireid-{method}"
    if dataset != "synthetic":
        assert model_args.clip_name_or_path == "openai/clip-vit-base-patch16" and tuple(built.image_size) == (384, 128)


def test_parameter_groups_by_role_bias_rate_and_adam_epsilon():
    """UIT names its boosted modules (SEN: cross-modal modules + classifier): the decoder's input and
    output layers train at the base rate; biases outside the boosted modules at the bias rate."""
    from tireid_hf.training.optim import build_optimizer, learning_rate_role

    model = ModelTester("uit", tir_decoder_width=32, tir_decoder_heads=4, tir_decoder_layers=1).model()
    assert learning_rate_role(model, "clip.text_model.embeddings.token_embedding.weight") == "backbone"
    assert learning_rate_role(model, "restoration_decoder.text_attention.attention.in_proj_weight") == "heads"
    assert learning_rate_role(model, "restoration_decoder.layers.0.mlp.0.weight") == "heads"
    assert learning_rate_role(model, "id_classifier.weight") == "heads"
    assert learning_rate_role(model, "restoration_decoder.predict.weight") == "new"
    args = TrainingArguments(learning_rate=1e-5, head_learning_rate_multiplier=5.0, bias_learning_rate_multiplier=2.0,
                             weight_decay=0.1, adam_epsilon=1e-3)
    groups = {group["name"]: group for group in parameter_groups(model, args)}
    assert groups["heads"]["lr"] == pytest.approx(5e-5) and groups["new"]["lr"] == pytest.approx(1e-5)
    assert groups["backbone_bias_no_decay"]["lr"] == pytest.approx(2e-5)
    assert groups["new_bias_no_decay"]["lr"] == pytest.approx(2e-5)
    assert groups["heads_no_decay"]["lr"] == pytest.approx(5e-5)  # the classifier's bias keeps the head rate (IRRA)
    assert any(p is model.restoration_decoder.predict.bias for p in groups["new_bias_no_decay"]["params"])
    assert any(p is model.id_classifier.bias for p in groups["heads_no_decay"]["params"])
    assert any(p is model.restoration_decoder.predict.weight for p in groups["new"]["params"])
    assert sum(len(group["params"]) for group in groups.values()) == sum(1 for p in model.parameters() if p.requires_grad)
    optimizer = build_optimizer(model, args)
    assert all(group["eps"] == 1e-3 for group in optimizer.param_groups)


def test_warmup_can_start_from_a_fraction_of_the_rate():
    # IRRA's linear warm-up from 0.1: f + (1 - f) (step + 1) / warmup
    assert [lr_multiplier(step, 10, 4, "cosine", warmup_start=0.1) for step in range(4)] == pytest.approx(
        [0.1 + 0.9 * 0.25, 0.1 + 0.9 * 0.5, 0.1 + 0.9 * 0.75, 1.0])
    with pytest.raises(ValueError, match="warmup_start_factor"):
        TrainingArguments(warmup_start_factor=1.5)


def test_learning_rate_roles_follow_the_modules_a_method_declares_not_parameter_names():
    """LCR2S declares two backbones (the student's CLIP and the frozen teacher copy of the student
    stage): both are backbone, whatever their names; a declared module that does not exist is an error."""
    model = ModelTester("lcr2s", stage="student").model()
    roles = model.learning_rate_roles()
    assert roles["teacher_clip.text_model.embeddings.token_embedding.weight"] == "backbone"
    assert roles["clip.vision_model.encoder.layers.0.mlp.fc1.weight"] == "backbone"
    assert {roles[name] for name, _ in model.named_parameters() if name.startswith(("fusion.", "student_id"))} == {"heads"}

    class Misdeclared(type(model)):
        backbone_modules = ("clip", "teacher_backbone")

    with pytest.raises(ValueError, match="no submodule 'teacher_backbone'"):
        Misdeclared(model.config).learning_rate_roles()


def test_library_schedules_fall_short_of_irras_warm_up():
    """Given IRRA's arguments as they are, transformers' warm-up starts from 0 (``step / warmup``) and torch's
    LinearLR from ``start_factor`` at step 0; IRRA's starts at ``f + (1 - f) / warmup`` (torch's chained form
    with a shifted start factor: tests/test_lr_schedule.py). After the warm-up, transformers' cosine and
    linear curves are ours."""
    from transformers import get_scheduler

    total, warmup = 10, 4

    def rates(scheduler):
        values = []
        for _ in range(total):
            values.append(scheduler.get_last_lr()[0])
            scheduler.optimizer.step()
            scheduler.step()
        return values

    def optimizer():
        return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)

    ours = [lr_multiplier(step, total, warmup, "cosine", warmup_start=0.1) for step in range(total)]
    transformers_cosine = rates(get_scheduler("cosine", optimizer(), num_warmup_steps=warmup, num_training_steps=total))
    torch_linear = rates(torch.optim.lr_scheduler.LinearLR(optimizer(), start_factor=0.1, total_iters=warmup))
    assert ours[0] == pytest.approx(0.325) and transformers_cosine[0] == 0.0 and torch_linear[0] == pytest.approx(0.1)
    assert transformers_cosine[warmup:] == pytest.approx(ours[warmup:])
    linear = rates(get_scheduler("linear", optimizer(), num_warmup_steps=warmup, num_training_steps=total))
    assert linear[warmup:] == pytest.approx([lr_multiplier(step, total, warmup, "linear") for step in range(warmup, total)])


@pytest.mark.parametrize("name, value", [("optimizer", "sgd"), ("lr_scheduler_type", "step"), ("mixed_precision", "fp8")])
def test_command_line_choices_come_from_the_literal_types(name, value):
    """The refusal is the project's error (train.py's front end prints it as one line), naming the argument
    and the value."""
    from tireid_hf.errors import TIReIDInputError
    from tireid_hf.training import parse_training_arguments

    with pytest.raises(TIReIDInputError) as refusal:
        parse_training_arguments([f"--{name}", value])
    assert f"argument --{name}" in str(refusal.value) and f"invalid choice: '{value}'" in str(refusal.value)


class _Batches(torch.utils.data.Dataset):
    """A dataset whose items are whole batches, as the training loop's (tireid_hf.training.loop._EpochBatches)."""

    def __len__(self):
        return 6

    def __getitem__(self, index):
        return {"index": torch.tensor([index])}


def test_accelerate_skip_first_batches_fails_on_a_loader_of_whole_batches():
    """Why the loop resumes mid-epoch with its own ``_EpochKeys.set_epoch(..., start)``."""
    from accelerate import skip_first_batches

    loader = torch.utils.data.DataLoader(_Batches(), batch_size=None, shuffle=False)
    with pytest.raises(TypeError):
        list(skip_first_batches(loader, 4))


class _Opaque:
    """Not a tensor: only a full unpickling can rebuild it."""


def test_accelerate_custom_checkpoints_unpickle_anything(tmp_path):
    """Why the schedule and sampler state stay in the checkpoint's progress.json instead of
    ``Accelerator.register_for_checkpointing``: its custom state is loaded with ``weights_only=False``."""
    from accelerate import Accelerator

    class Holder:
        def __init__(self, value=None):
            self.value = value

        def state_dict(self):
            return {"value": self.value}

        def load_state_dict(self, state):
            self.value = state["value"]

    accelerator = Accelerator(cpu=True)
    saved = Holder(_Opaque())
    accelerator.register_for_checkpointing(saved)
    accelerator.save_state(str(tmp_path / "state"))
    saved.value = None
    accelerator.load_state(str(tmp_path / "state"))
    assert isinstance(saved.value, _Opaque)  # an arbitrary object came back from the pickle
