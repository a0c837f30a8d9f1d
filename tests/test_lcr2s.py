"""LCR²S: support sets, attentional fusion, the distillation losses, the two-stage schedule, switches,
and a short training run that must learn."""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel

from tireid_hf.modeling import LCR2SConfig, LCR2SModel, losses
from tireid_hf.modeling.modeling_lcr2s import fuse_with_support_set, support_set_indices
from tester import ModelTester, tiny_clip_config

TEACHER_LOSSES = {"teacher_align", "teacher_id"}
STUDENT_LOSSES = {"student_align", "student_id", "distill_feature", "distill_relation"}


def trainable_without_gradient(model):
    return [name for name, parameter in model.named_parameters()
            if parameter.requires_grad and name != "clip.logit_scale"
            and (parameter.grad is None or not parameter.grad.abs().sum() > 0)]


def state(module):
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def assert_same_state(first, second):
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=0, msg=name)


# ----------------------------------------------------------------------------- support sets and fusion
def test_support_sets_are_the_other_samples_of_the_identity_in_batch_order():
    pids = torch.tensor([0, 0, 1, 0, 2])
    index, padding = support_set_indices(pids, support_size=3)
    assert index.shape == padding.shape == (5, 3)  # min(3, N - 1)
    expected = {0: [1, 3], 1: [0, 3], 2: [], 3: [0, 1], 4: []}
    for row, members in expected.items():
        assert padding[row].tolist() == [False] * len(members) + [True] * (3 - len(members))
        assert index[row, : len(members)].tolist() == members

    index, padding = support_set_indices(pids, support_size=1)  # only the first member in batch order
    assert index[:, 0].tolist()[:2] == [1, 0] and index[3, 0] == 0
    assert padding[:, 0].tolist() == [False, False, True, False, True]
    assert support_set_indices(pids, support_size=0)[0].shape == (5, 0)
    assert support_set_indices(torch.tensor([4]), support_size=3)[0].shape == (1, 0)  # alone in the batch


def test_with_four_views_per_identity_every_support_set_holds_the_three_others():
    """The P x K sampler's batch with K = 4: support_size 3 gives every sample all three other views;
    with K = 2 only one exists, so two of the three slots are padding."""
    index, padding = support_set_indices(torch.tensor([7, 7, 7, 7, 2, 2, 2, 2]), support_size=3)
    assert index.tolist() == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2],
                              [5, 6, 7], [4, 6, 7], [4, 5, 7], [4, 5, 6]]
    assert not padding.any()
    index, padding = support_set_indices(torch.tensor([7, 7, 2, 2, 5, 5, 9, 9]), support_size=3)
    assert index[:, 0].tolist() == [1, 0, 3, 2, 5, 4, 7, 6]
    assert padding.tolist() == [[False, True, True]] * 8


def test_a_sample_alone_fuses_with_itself_only():
    torch.manual_seed(0)
    layer = LCR2SModel(ModelTester("lcr2s").config())._fusion_of("image").eval()
    features = torch.randn(3, 24)
    index, padding = support_set_indices(torch.tensor([5, 6, 7]), support_size=3)
    with torch.no_grad():
        fused = fuse_with_support_set(layer, features, index, padding)
        # one key: the attention weight is 1, the output is out_proj(V(LN_m(x))) whatever the query
        value_weight = layer.cross_attention.in_proj_weight[48:]
        value_bias = layer.cross_attention.in_proj_bias[48:]
        attended = layer.cross_attention.out_proj(layer.memory_norm(features) @ value_weight.t() + value_bias)
        expected = features + attended
        expected = expected + layer.mlp(layer.mlp_norm(expected))
    torch.testing.assert_close(fused, expected)


def test_fusion_reads_only_the_support_set_and_ignores_padding():
    torch.manual_seed(0)
    layer = LCR2SModel(ModelTester("lcr2s").config())._fusion_of("text").eval()
    pids = torch.tensor([0, 0, 1, 0, 2])
    features = torch.randn(5, 24)
    index, padding = support_set_indices(pids, support_size=3)
    changed = features.clone()
    changed[[2, 4]] = 50.0  # other identities (and the padded slots, which point at them)
    with torch.no_grad():
        fused, fused_changed = (fuse_with_support_set(layer, f, index, padding) for f in (features, changed))
        only_members = fuse_with_support_set(layer, features[[0, 1, 3]], *support_set_indices(pids[[0, 1, 3]], 3))
    torch.testing.assert_close(fused_changed[[0, 1, 3]], fused[[0, 1, 3]])
    torch.testing.assert_close(only_members, fused[[0, 1, 3]])


# ----------------------------------------------------------------------------- loss formulas by hand
def test_feature_distillation_by_hand():
    student = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    teacher = torch.tensor([[0.0, 3.0], [1.0, 1.0]])
    expected = ((1 - 0.0) + (1 - 1 / math.sqrt(2))) / 2
    assert losses.feature_distillation_loss(student, teacher).item() == pytest.approx(expected, rel=1e-6)


def test_relation_kl_takes_the_teacher_as_target_by_hand():
    teacher = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    student = torch.zeros(2, 2)
    p = [math.exp(2) / (math.exp(2) + 1), 1 / (math.exp(2) + 1)]
    row0 = sum(pj * (math.log(pj) - math.log(0.5)) for pj in p)  # KL(teacher || uniform student); row 1 is 0
    expected = row0 / 2 + row0 / 2  # rows, then columns (the transpose is the same matrix)
    assert losses.relation_kl_loss(student, teacher).item() == pytest.approx(expected, rel=1e-6)
    reverse = sum(0.5 * (math.log(0.5) - math.log(pj)) for pj in p)  # KL(student || teacher): not this
    assert losses.relation_kl_loss(teacher, student).item() == pytest.approx(reverse, rel=1e-6)
    assert losses.relation_kl_loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-7)


def test_relation_frobenius_by_hand():
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    teacher = torch.tensor([[0.5, 0.0], [0.0, -1.0]])
    assert losses.relation_frobenius_loss(student, teacher).item() == pytest.approx((0.25 + 4.0) / 4, rel=1e-6)
    with pytest.raises(ValueError, match="differ"):
        losses.relation_frobenius_loss(student, torch.zeros(3, 3))


# ----------------------------------------------------------------------------- stages
def test_two_stage_sequence_freezes_the_teacher_and_trains_the_student(tmp_path):
    tester = ModelTester("lcr2s")
    model, inputs = tester.model(), tester.inputs()
    assert model.training_stages() == ("teacher", "student") and model.config.stage == "teacher"
    assert model.teacher_clip is None and model.student_id_classifier is None
    model.start_stage("teacher")  # the loop calls it before the first stage too: nothing changes
    assert set(model(**inputs).losses) == TEACHER_LOSSES

    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(3):
        optimizer.zero_grad()
        model(**inputs).loss.backward()
        optimizer.step()
    trained_backbone, trained_fusion = state(model.clip), state(model.fusion)

    model.start_stage("student")
    assert model.config.stage == "student" and model.teacher_id_classifier is None
    assert model.student_id_classifier is not None
    assert_same_state(state(model.teacher_clip), trained_backbone)  # the teacher is the trained backbone ...
    assert all(not p.requires_grad for p in [*model.teacher_clip.parameters(), *model.fusion.parameters()])
    # ... and so is the student, which keeps training
    assert all(p.requires_grad for name, p in model.clip.named_parameters() if name != "logit_scale")
    model.train()
    assert not model.teacher_clip.training and not model.fusion.training and model.clip.training

    output = model(**inputs)
    assert set(output.losses) == STUDENT_LOSSES
    output.loss.backward()
    assert trainable_without_gradient(model) == []
    assert all(p.grad is None for p in model.teacher_clip.parameters())

    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(3):
        optimizer.step()
        optimizer.zero_grad()
        model(**inputs).loss.backward()
    assert_same_state(state(model.teacher_clip), trained_backbone)
    assert_same_state(state(model.fusion), trained_fusion)
    moved = state(model.clip)
    assert any(not torch.equal(moved[name], trained_backbone[name]) for name in moved)

    model.start_stage("student")  # a resumed run: the teacher is NOT re-copied from the trained student
    assert_same_state(state(model.teacher_clip), trained_backbone)
    with pytest.raises(ValueError, match="cannot go back"):
        model.start_stage("teacher")
    with pytest.raises(ValueError, match="training stages"):
        model.start_stage("joint")

    # a student-stage checkpoint loads back exactly, in its stage, with the teacher frozen
    model.eval().save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert loaded.config.stage == "student" and loaded.teacher_clip is not None
    assert not any(p.requires_grad for p in loaded.teacher_clip.parameters())
    assert_same_state(state(loaded), state(model))
    with torch.no_grad():
        before, after = model(**inputs), loaded(**inputs)
    assert after.losses.keys() == before.losses.keys()
    for name in ("loss", "image_embeds", "text_embeds"):
        torch.testing.assert_close(getattr(after, name), getattr(before, name), rtol=0, atol=0)

    # inference: the student alone, the same tensors as the baseline's model
    exported = model.export_for_inference()
    assert all(name.startswith("clip.") for name in exported.state_dict())
    baseline = ModelTester("clip_reid").model().export_for_inference()
    assert sum(p.numel() for p in exported.parameters()) == sum(p.numel() for p in baseline.parameters())
    with torch.no_grad():
        torch.testing.assert_close(exported.get_image_features(inputs["pixel_values"]),
                                   F.normalize(model.encode_image(inputs["pixel_values"]).global_features, dim=-1))


def test_student_stage_distillation_targets_come_from_the_frozen_teacher():
    tester = ModelTester("lcr2s")
    model, inputs = tester.model().eval(), tester.inputs()
    model.start_stage("student")
    with torch.no_grad():
        for parameter in model.clip.parameters():  # the student drifts away from the teacher
            parameter.add_(0.01 * torch.randn_like(parameter))
        output = model(**inputs)
        with model._encoding_with(model.teacher_clip):
            image = model.encode_image(inputs["pixel_values"]).global_features
            text = model.encode_text(inputs["input_ids"], inputs["attention_mask"]).global_features
        index, padding = support_set_indices(inputs["pids"], 3)
        enriched_image = fuse_with_support_set(model.fusion["image"], image, index, padding)
        enriched_text = fuse_with_support_set(model.fusion["text"], text, index, padding)
        student_image = model.encode_image(inputs["pixel_values"]).global_features
        student_text = model.encode_text(inputs["input_ids"], inputs["attention_mask"]).global_features
    cosines = F.cosine_similarity(student_image, enriched_image), F.cosine_similarity(student_text, enriched_text)
    expected = sum((1 - cosine).mean() for cosine in cosines)
    torch.testing.assert_close(output.losses["distill_feature"], expected)
    assert model.clip is not model.teacher_clip  # the swap is undone


def test_joint_mode_computes_every_term_and_detaches_the_distillation_targets():
    tester = ModelTester("lcr2s", training_schedule="joint")
    model, inputs = tester.model(), tester.inputs()
    assert model.training_stages() == ("joint",) and model.config.stage == "joint"
    assert model.teacher_clip is None
    output = model(**inputs)
    assert set(output.losses) == TEACHER_LOSSES | STUDENT_LOSSES
    output.loss.backward()
    assert trainable_without_gradient(model) == []

    model.zero_grad()
    output = model(**inputs)
    (output.losses["distill_feature"] + output.losses["distill_relation"]).backward()
    assert all(p.grad is None for p in model.fusion.parameters())  # the teacher does not learn from the student
    assert model.clip.text_projection.weight.grad.abs().sum() > 0


def test_stage_is_validated_against_the_schedule():
    tester = ModelTester("lcr2s")
    with pytest.raises(ValueError, match="stage must be one of"):
        tester.config(training_schedule="joint", stage="student")
    with pytest.raises(ValueError, match="training_schedule"):
        tester.config(training_schedule="alternating")
    with pytest.raises(ValueError, match="relation_distance"):
        tester.config(relation_distance="l1")
    with pytest.raises(ValueError, match="fusion_num_heads"):
        tester.config(fusion_num_heads=5)
    with pytest.raises(ValueError, match="support_size"):
        tester.config(support_size=-1)
    assert LCR2SConfig(clip_config=tiny_clip_config(), image_size=(64, 32), stage="student").stage == "student"


# ----------------------------------------------------------------------------- switches
@pytest.mark.parametrize("name", sorted(TEACHER_LOSSES | STUDENT_LOSSES))
def test_a_zero_weight_removes_its_term(name):
    tester = ModelTester("lcr2s", training_schedule="joint", **{f"{name}_loss_weight": 0.0})
    model = tester.model()
    output = model(**tester.inputs())
    assert set(output.losses) == (TEACHER_LOSSES | STUDENT_LOSSES) - {name}
    if name.endswith("_id"):
        assert getattr(model, f"{name}_classifier") is None


def test_none_of_its_additions_trains_the_student_alone_in_one_stage():
    """The row switches the teacher off (support-set fusion, teacher losses, both distillations): one
    training step of the student with SDM + ID, in one stage where the full config has two."""
    assert LCR2SConfig.zoo_contribution == "none of its additions"
    assert LCR2SConfig.zoo_contribution in LCR2SConfig.zoo_ablations
    overrides = LCR2SConfig.zoo_ablations["none of its additions"]
    fields = dict(clip_config=tiny_clip_config(), image_size=(64, 32))
    assert LCR2SConfig(**fields).stages == ("teacher", "student")
    assert LCR2SConfig(**fields, **overrides).stages == ("student",)
    tester = ModelTester("lcr2s", **overrides)
    model = tester.model()
    assert model.fusion is None and model.teacher_clip is None
    inputs = tester.inputs()
    output = model(**inputs)
    assert set(output.losses) == {"student_align", "student_id"} and torch.isfinite(output.loss)
    output.loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert torch.isfinite(model(**inputs).loss)


def test_without_teacher_the_student_trains_alone_like_the_baseline():
    tester = ModelTester("lcr2s", use_teacher=False)
    model = tester.model()
    assert model.training_stages() == ("student",) and model.fusion is None and model.teacher_clip is None
    output = model(**tester.inputs())
    assert set(output.losses) == {"student_align", "student_id"}
    model.start_stage("student")
    assert model.teacher_clip is None


def test_shared_fusion_is_one_module():
    model = ModelTester("lcr2s", share_fusion=True).model()
    assert set(model.fusion) == {"shared"} and model._fusion_of("image") is model._fusion_of("text")


def test_frobenius_relation_distance_uses_cosine_matrices():
    tester = ModelTester("lcr2s", training_schedule="joint", relation_distance="frobenius")
    model, inputs = tester.model().eval(), tester.inputs()
    with torch.no_grad():
        output = model(**inputs)
        image = model.encode_image(inputs["pixel_values"]).global_features
        text = model.encode_text(inputs["input_ids"], inputs["attention_mask"]).global_features
        index, padding = support_set_indices(inputs["pids"], 3)
        enriched_image = F.normalize(fuse_with_support_set(model.fusion["image"], image, index, padding), dim=-1)
        enriched_text = F.normalize(fuse_with_support_set(model.fusion["text"], text, index, padding), dim=-1)
    difference = output.logits_per_text / model.logit_scale - enriched_text @ enriched_image.t()
    torch.testing.assert_close(output.losses["distill_relation"], difference.pow(2).mean())


def _kl_rows(target_logits, predicted_logits):
    """1/N sum_i KL(softmax(target_i) || softmax(predicted_i)), written out."""
    log_p, log_q = F.log_softmax(target_logits, dim=1), F.log_softmax(predicted_logits, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()


@pytest.mark.parametrize("stage", ["joint", "student"])
def test_kl_relation_distance_distills_the_teachers_similarities_into_the_students(stage):
    # The default relation distance: KL from the teacher's row/column-softmaxed logits to the student's.
    # Compared with the value computed here from the two models' embeddings, and far from 0 at
    # initialisation (a student-vs-student or teacher-vs-teacher comparison would give 0).
    schedule = {"joint": "joint", "student": "two_stage"}[stage]
    tester = ModelTester("lcr2s", training_schedule=schedule)
    model, inputs = tester.model().eval(), tester.inputs()
    assert model.config.relation_distance == "kl"
    model.start_stage(stage)
    with torch.no_grad():
        if stage == "student":
            for parameter in model.clip.parameters():  # the student drifts away from the frozen teacher
                parameter.add_(0.01 * torch.randn_like(parameter))
        output = model(**inputs)
        with model._encoding_with(model.teacher_clip or model.clip):
            image = model.encode_image(inputs["pixel_values"]).global_features
            text = model.encode_text(inputs["input_ids"], inputs["attention_mask"]).global_features
        index, padding = support_set_indices(inputs["pids"], model.config.support_size)
        enriched_image = F.normalize(fuse_with_support_set(model.fusion["image"], image, index, padding), dim=-1)
        enriched_text = F.normalize(fuse_with_support_set(model.fusion["text"], text, index, padding), dim=-1)
    teacher_logits = model.logit_scale * enriched_text @ enriched_image.t()
    student_logits = output.logits_per_text
    expected = _kl_rows(teacher_logits, student_logits) + _kl_rows(teacher_logits.t(), student_logits.t())
    assert expected.item() > 1e-3, expected  # a comparison of one model with itself gives 0 (to 1e-7)
    reverse = _kl_rows(student_logits, teacher_logits) + _kl_rows(student_logits.t(), teacher_logits.t())
    assert reverse.item() != pytest.approx(expected.item(), rel=0.01)  # the direction matters here
    torch.testing.assert_close(output.losses["distill_relation"], expected)


# ----------------------------------------------------------------------------- learning
def test_two_stage_training_learns_and_the_student_retrieves_the_batch():
    # tau = 0.1: a random-init tiny CLIP learns reliably in a few steps with the smoother SDM
    # (0.02, the default, is the pretrained-CLIP value)
    tester = ModelTester("lcr2s", batch_size=8, num_ids=4, temperature=0.1)
    model = tester.model()
    inputs = tester.inputs()
    inputs["pids"] = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    history = {}
    for stage, steps in zip(model.training_stages(), (25, 20)):
        model.start_stage(stage)
        model.train()
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        history[stage] = []
        for _ in range(steps):
            optimizer.zero_grad()
            output = model(**inputs)
            output.loss.backward()
            optimizer.step()
            history[stage].append(output.loss.item())
    assert history["teacher"][-1] < 0.25 * history["teacher"][0], history
    # the student starts from the teacher's backbone (and a fresh ID classifier, ~log 4 of the loss)
    assert history["student"][-1] < history["student"][0], history
    assert output.losses["student_align"] < 0.1 and output.losses["distill_relation"] < 0.1, output.losses
    model.eval()
    with torch.no_grad():
        scores = model.get_text_features(inputs["input_ids"], inputs["attention_mask"]) @ \
            model.get_image_features(inputs["pixel_values"]).t()
    assert torch.equal(inputs["pids"][scores.argmax(dim=1)], inputs["pids"])
