"""LGUR: the semi-hard ranking loss and the per-prototype ID loss against hand-computed cases, the
branches (dictionary, foreground, guidance, prototypes), the switches, and a short run that learns."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from tireid_hf.modeling import LGURConfig
from tireid_hf.modeling.losses import semi_hard_ranking_loss
from tireid_hf.modeling.modeling_lgur import ID_TERMS
from tester import ModelTester, tiny_clip_config

LOSS_NAMES = ("id_guided", "rank_guided", "id_dict", "rank_dict", "rank_text_dict", "rank_image_dict")


# ----------------------------------------------------------------------------- ranking loss
def ranking_case():
    """Anchors = the 4 basis vectors, so s_ij = paired_j[i]: the columns of s are the paired embeddings.

    s = [[.8, 21/29, .6, .96], [.6, 20/29, 0, 0], [0, 0, .8, 0], [0, 0, 0, .28]], pids [0, 1, 1, 1], margin .3.
    """
    columns = torch.tensor([[0.8, 0.6, 0, 0], [21 / 29, 20 / 29, 0, 0], [0.6, 0, 0.8, 0], [0.96, 0, 0, 0.28]])
    return torch.eye(4), columns, torch.tensor([0, 1, 1, 1])


# Row anchors (text->image direction of s):
#   row 0: positive .8; negatives 21/29 (semi-hard, hinge .3 + 21/29 - .8), .6 (semi-hard, hinge .1),
#          .96 (hard: never drawn while semi-hard ones exist) -> one of the two semi-hard hinges
#   row 1: positive 20/29; negative .6 (semi-hard)       -> .3 + .6 - 20/29
#   row 2: positive .8;  negative 0 (easy: 0 < .8 - .3)  -> 0
#   row 3: positive .28; negative 0 (semi-hard)          -> .3 + 0 - .28
# Column anchors (s^T):
#   col 0: positive .8; rows 1..3 give .6 (semi-hard), 0, 0 (easy) -> .3 + .6 - .8
#   col 1: positive 20/29; row 0 gives 21/29 >= positive: no semi-hard -> dropped (0), as the reference;
#          with hard_fallback the hard one                  -> .3 + 1/29
#   col 2: positive .8; row 0 gives .6 (semi-hard)       -> .1
#   col 3: positive .28; row 0 gives .96 (hard): dropped, with hard_fallback -> .3 + .96 - .28
FIXED = (0.3 + 0.6 - 20 / 29) + 0.0 + (0.3 - 0.28) + (0.3 + 0.6 - 0.8) + 0.0 + 0.1 + 0.0
HARD_FALLBACK = (0.3 + 1 / 29) + (0.3 + 0.96 - 0.28)
ROW0_CHOICES = (0.3 + 21 / 29 - 0.8, 0.3 + 0.6 - 0.8)


@pytest.mark.parametrize("hard_fallback", [False, True])
def test_ranking_loss_draws_a_semi_hard_negative_and_drops_or_falls_back_on_anchors_without_one(hard_fallback):
    anchors, paired, pids = ranking_case()
    fixed = FIXED + (HARD_FALLBACK if hard_fallback else 0.0)
    seen = set()
    for seed in range(20):
        value = semi_hard_ranking_loss(anchors, paired, pids, margin=0.3, generator=torch.Generator().manual_seed(seed),
                                       hard_fallback=hard_fallback).item()
        matches = [index for index, choice in enumerate(ROW0_CHOICES) if value == pytest.approx(fixed + choice, abs=1e-5)]
        assert len(matches) == 1, value
        seen.add(matches[0])
    assert seen == {0, 1}  # both semi-hard negatives of row 0 are drawn, the hard one never


def test_ranking_loss_is_reproducible_with_a_generator_and_its_expectation_averages_the_candidates():
    anchors, paired, pids = ranking_case()
    first = semi_hard_ranking_loss(anchors, paired, pids, 0.3, generator=torch.Generator().manual_seed(3))
    second = semi_hard_ranking_loss(anchors, paired, pids, 0.3, generator=torch.Generator().manual_seed(3))
    assert first.item() == second.item()
    expected = semi_hard_ranking_loss(anchors, paired, pids, 0.3, expected=True)
    assert expected.item() == pytest.approx(FIXED + sum(ROW0_CHOICES) / 2, abs=1e-5)


def test_ranking_loss_without_other_identities_is_zero_and_refuses_bad_shapes():
    anchors, paired, _ = ranking_case()
    assert semi_hard_ranking_loss(anchors, paired, torch.zeros(4, dtype=torch.long), 0.3).item() == 0.0
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        semi_hard_ranking_loss(anchors, paired[:3], torch.zeros(4, dtype=torch.long), 0.3)


def test_ranking_loss_on_collapsed_embeddings_is_zero_as_the_reference_and_the_fallback_gives_a_gradient():
    # identical embeddings: every s_ij = 1 = s_ii, so no negative is semi-hard (that needs s_ij < s_ii) and
    # every one is hard; the reference drops every anchor (0), the fallback draws one each: hinge .3 + 1 - 1
    collapsed, pids = torch.ones(3, 2), torch.tensor([0, 1, 2])
    assert semi_hard_ranking_loss(collapsed, collapsed.clone(), pids, margin=0.3).item() == 0.0
    assert semi_hard_ranking_loss(collapsed, collapsed.clone(), pids, margin=0.3, hard_fallback=True).item() == pytest.approx(1.8)
    # nearly collapsed (1e-3 apart): the negatives are semi-hard by ~1e-6, each hinge ~.3, and the loss has a gradient
    anchors = (torch.ones(3, 2) + 1e-3 * torch.randn(3, 2, generator=torch.Generator().manual_seed(0))).requires_grad_()
    loss = semi_hard_ranking_loss(anchors, anchors.detach().clone(), pids, margin=0.3,
                                  generator=torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(6 * 0.3, abs=1e-4)
    loss.backward()
    assert anchors.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- config
def test_config_defaults_follow_the_reference_code():
    config = LGURConfig()
    assert (config.num_atoms, config.num_prototypes, config.prototype_dim, config.ranking_margin) == (400, 6, 512, 0.3)
    assert config.hidden_size == 512 and config.embed_dim == 3072
    assert all(config.loss_weight(name) == 1.0 for name in LOSS_NAMES) and config.sdm_loss_weight == 0.0


def test_config_refuses_bad_values_and_degenerate_terms():
    clip = tiny_clip_config()
    with pytest.raises(ValueError, match="multiple of num_attention_heads"):
        LGURConfig(clip_config=clip, hidden_size=30, num_attention_heads=8)
    with pytest.raises(ValueError, match="num_prototypes must be > 0"):
        LGURConfig(clip_config=clip, num_prototypes=0)
    with pytest.raises(ValueError, match="rank_text_dict_loss_weight"):
        LGURConfig(clip_config=clip, use_dictionary=False)
    with pytest.raises(ValueError, match="rank_image_dict_loss_weight"):
        LGURConfig(clip_config=clip, use_dictionary=False, rank_text_dict_loss_weight=0,
                   use_foreground_weighting=False, use_cross_modality_guidance=False)


# ----------------------------------------------------------------------------- the ID loss
def test_prototype_identity_loss_matches_hand_computation():
    model = ModelTester("lgur", num_ids=2, num_prototypes=2, prototype_dim=2).model()
    with torch.no_grad():
        for classifier in model.id_classifiers:
            classifier.weight.copy_(torch.eye(2))
            classifier.bias.zero_()
    image_parts = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])  # one sample, 2 prototypes x 2
    text_parts = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])
    # prototype 0: CE([2, 0], 0) and CE([0, 0], 0); prototype 1: CE([0, 1], 0) and CE([1, 1], 0); the reference's
    # Id_Loss SUMS the two modalities, calculate_part_id averages over the prototypes:
    # ((0.126928 + 0.693147) + (1.313262 + 0.693147)) / 2 = 1.413242
    expected = 1.413242
    value = model.prototype_identity_loss(image_parts, text_parts, torch.tensor([0]), "id_dict")
    assert value.item() == pytest.approx(expected, abs=2e-6)


def test_id_loss_without_num_ids_is_an_error_not_a_silent_skip():
    tester = ModelTester("lgur")
    model = tester.model(num_ids=0)
    assert model.id_classifiers is None
    with pytest.raises(ValueError, match="num_ids is 0"):
        model(**tester.inputs())


# ----------------------------------------------------------------------------- branches
def test_inference_path_is_prototypes_over_foreground_weighted_dictionary_tokens():
    tester = ModelTester("lgur")
    model = tester.model().eval()
    inputs = tester.inputs()
    with torch.no_grad():
        patches = model.encode_image(inputs["pixel_values"], return_tokens=True).token_features[:, 1:]
        atoms = model.dictionary.atoms.expand(patches.shape[0], -1, -1)
        reconstructed = model.dictionary.reconstruction(patches, atoms)
        weighted = torch.sigmoid(patches @ model.foreground.weight.t() + model.foreground.bias) * reconstructed
        image = F.normalize(model.unification(weighted).flatten(1), dim=-1)
        torch.testing.assert_close(model.get_image_features(inputs["pixel_values"]), image)

        text = model.encode_text(inputs["input_ids"], inputs["attention_mask"], return_tokens=True).token_features
        padding = inputs["attention_mask"] == 0
        words = model.dictionary.reconstruction(text, model.dictionary.atoms.expand(text.shape[0], -1, -1))
        hidden = model.unification.prototypes.expand(text.shape[0], -1, -1)
        for layer in model.unification.layers:
            hidden = layer(hidden, words, memory_padding_mask=padding)
        parts = torch.cat([projection(hidden[:, k]) for k, projection in enumerate(model.unification.projections)], dim=1)
        torch.testing.assert_close(model.get_text_features(inputs["input_ids"], inputs["attention_mask"]),
                                   F.normalize(parts, dim=-1))
    assert model.get_image_features(inputs["pixel_values"]).shape == (tester.batch_size, 6 * 512)


def test_text_embedding_ignores_padded_positions():
    tester = ModelTester("lgur")
    model = tester.model().eval()
    inputs = tester.inputs()
    changed = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, 1000)
    with torch.no_grad():
        torch.testing.assert_close(model.get_text_features(changed, inputs["attention_mask"]),
                                   model.get_text_features(inputs["input_ids"], inputs["attention_mask"]))


def test_guided_branch_uses_the_caption_and_the_shared_or_own_layer():
    tester = ModelTester("lgur")
    inputs = tester.inputs()
    shared = tester.model().eval()
    assert shared.guidance is None  # the reference code reuses the reconstruction layer
    with torch.no_grad():
        patches = shared.image_tokens(inputs["pixel_values"])
        text, padding = shared.text_tokens(inputs["input_ids"], inputs["attention_mask"])
        guided = shared.guided_image_tokens(patches, text, padding)
        expected = torch.sigmoid(shared.foreground(patches)) * shared.dictionary.reconstruction(
            patches, text, memory_padding_mask=padding)
        torch.testing.assert_close(guided, expected)
        other_text = shared.guided_image_tokens(patches, text.flip(0), padding.flip(0))
        assert not torch.allclose(guided, other_text)

    own = tester.model(share_guidance_layer=False)
    assert own.guidance is not None
    exported = own.export_for_inference()
    assert exported.guidance is None and exported.id_classifiers is None and exported.dictionary is not None


def test_without_guidance_the_guided_branch_embeds_the_plain_patches():
    tester = ModelTester("lgur")
    model = tester.model(use_cross_modality_guidance=False, share_guidance_layer=False)
    assert model.guidance is None
    patches = torch.randn(2, 8, 24)
    assert model.guided_image_tokens(patches, torch.randn(2, 5, 24), None) is patches


def test_switches_remove_their_modules_and_terms():
    tester = ModelTester("lgur")
    inputs = tester.inputs()
    no_dictionary = tester.model(use_dictionary=False, rank_text_dict_loss_weight=0.0)
    assert no_dictionary.dictionary is None and no_dictionary.guidance is not None  # guidance needs its own layer now
    assert set(no_dictionary(**inputs).losses) == set(LOSS_NAMES) - {"rank_text_dict"}
    patches = torch.randn(2, 8, 24)
    no_foreground = tester.model(use_foreground_weighting=False)
    assert no_foreground.foreground is None
    torch.testing.assert_close(no_foreground.dictionary_image_tokens(patches), no_foreground.dictionary(patches))
    projected = tester.model(hidden_size=16)
    assert projected.token_projection.weight.shape == (16, 24)
    assert projected.get_image_features(inputs["pixel_values"]).shape == (tester.batch_size, 3072)
    single = tester.model(num_prototypes=1, prototype_dim=8)
    assert single.config.embed_dim == 8 and len(single.id_classifiers) == 1
    assert single(**inputs).image_embeds.shape == (tester.batch_size, 8)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_zero_weight_removes_the_term(name):
    tester = ModelTester("lgur", **{f"{name}_loss_weight": 0.0})
    output = tester.model()(**tester.inputs())
    assert set(output.losses) == set(LOSS_NAMES) - {name}


def test_without_id_terms_no_classifier_is_built_and_sdm_is_an_option():
    tester = ModelTester("lgur", id_guided_loss_weight=0.0, id_dict_loss_weight=0.0, sdm_loss_weight=1.0)
    model = tester.model()
    assert model.id_classifiers is None
    output = model(**tester.inputs())
    assert set(output.losses) == set(LOSS_NAMES) - {"id_guided", "id_dict"} | {"sdm"}


def test_without_guided_terms_no_guided_branch_is_needed():
    tester = ModelTester("lgur", share_guidance_layer=False, id_guided_loss_weight=0.0, rank_guided_loss_weight=0.0,
                         rank_image_dict_loss_weight=0.0)
    model = tester.model()
    assert model.guidance is None
    assert set(model(**tester.inputs()).losses) == {"id_dict", "rank_dict", "rank_text_dict"}


# ----------------------------------------------------------------------------- zoo ablation rows
LGUR_ROWS = {label: overrides for label, overrides in LGURConfig.zoo_ablations.items() if "method" not in overrides}
ROW_TERMS = {
    "no DGA": {"id_guided", "rank_guided", "id_dict", "rank_dict"},
    "no dictionary": set(LOSS_NAMES) - {"rank_text_dict"},
    "no foreground weighting": set(LOSS_NAMES),
    "no cross-modality guidance": set(LOSS_NAMES),
    "one prototype, same width": set(LOSS_NAMES),
    "none of its additions": {"sdm", "id"},
}


def test_every_lgur_row_is_listed_with_its_terms_and_the_contribution_row_switches_dga_off():
    assert set(LGUR_ROWS) == set(ROW_TERMS)
    assert LGURConfig.zoo_contribution == "no DGA"
    dga = {"use_dictionary", "use_foreground_weighting", "use_cross_modality_guidance"}
    assert all(LGUR_ROWS["no DGA"][name] is False for name in dga)
    assert all(LGUR_ROWS["none of its additions"][name] is False for name in dga)


@pytest.mark.parametrize("label", sorted(ROW_TERMS))
def test_each_lgur_row_trains_a_step_with_exactly_its_terms(label):
    tester = ModelTester("lgur", **LGUR_ROWS[label])
    model = tester.model().train()
    output = model(**tester.inputs())
    assert set(output.losses) == ROW_TERMS[label]
    assert torch.isfinite(output.loss)
    output.loss.backward()
    projection = model.unification.projections[0].weight
    assert projection.grad is not None and projection.grad.abs().sum() > 0


def test_the_one_prototype_row_keeps_the_synthetic_configs_embedding_width():
    synthetic = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "lgur_synthetic.yaml").read_text())["model_config"]
    full = LGURConfig(**synthetic).embed_dim
    one = LGURConfig(**{**synthetic, **LGUR_ROWS["one prototype, same width"]})
    assert (one.num_prototypes, one.embed_dim) == (1, full) and full == 6 * 64


def test_none_of_its_additions_is_the_baselines_training_on_the_prototype_embedding():
    tester = ModelTester("lgur", **LGUR_ROWS["none of its additions"])
    model = tester.model().eval()
    assert (model.dictionary, model.foreground, model.guidance, model.id_classifiers) == (None, None, None, None)
    assert model.id_classifier.weight.shape == (tester.num_ids, model.config.embed_dim)
    assert model.learning_rate_roles()["id_classifier.weight"] == "heads"
    with torch.no_grad():
        model.id_classifier.weight.zero_()  # every logit 0: each modality's CE is ln(num_ids)
    inputs = tester.inputs()
    patches = model.image_tokens(inputs["pixel_values"])
    torch.testing.assert_close(model.image_retrieval_features(inputs["pixel_values"]),
                               model.unification(patches).flatten(1))  # PGU(x): no dictionary, no foreground
    losses = model(**inputs).losses
    assert losses["id"].item() == pytest.approx(math.log(tester.num_ids), abs=1e-6)  # (ln 3 + ln 3) / 2
    assert losses["sdm"].item() > 0


# ----------------------------------------------------------------------------- learning
def test_short_training_run_learns_the_batch():
    tester = ModelTester("lgur", batch_size=6, num_ids=4, prototype_dim=16)
    torch.manual_seed(0)
    model = tester.model().train()
    inputs = tester.inputs()
    inputs["pids"] = torch.tensor([0, 0, 1, 1, 2, 3])
    model.clip.text_model.embeddings.token_embedding.requires_grad_(False)  # the 49408-row table: CPU time only
    optimizer = torch.optim.Adam([parameter for parameter in model.parameters() if parameter.requires_grad], lr=1e-3)
    totals = []
    for _ in range(25):
        loss = model(**inputs).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals.append(loss.item())
    assert sum(totals[-5:]) / 5 < 0.5 * sum(totals[:5]) / 5, totals
    model.eval()
    with torch.no_grad():
        scores = model.get_text_features(inputs["input_ids"], inputs["attention_mask"]) @ \
            model.get_image_features(inputs["pixel_values"]).t()
    assert torch.equal(inputs["pids"][scores.argmax(dim=1)], inputs["pids"])


def test_initialisation_follows_the_reference_code():
    """Part projections Kaiming-normal fan-out (std sqrt(2 / out_dim)), ID classifiers N(0, 0.001) with zero
    bias, as ZhiyinShao-H/LGUR's weights_init_kaiming / weights_init_classifier (issue 15: at N(0, 0.02)
    the ID terms never left chance)."""
    torch.manual_seed(0)
    model = ModelTester("lgur", num_ids=50, prototype_dim=256, num_prototypes=4).model()
    projections = torch.cat([projection.weight.flatten() for projection in model.unification.projections])
    assert projections.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.05)
    assert projections.mean().abs().item() < 0.01
    classifiers = torch.cat([classifier.weight.flatten() for classifier in model.id_classifiers])
    assert classifiers.std().item() == pytest.approx(0.001, rel=0.05)
    assert all(torch.count_nonzero(classifier.bias) == 0 for classifier in model.id_classifiers)


def test_prototype_decoder_is_cross_attention_only_with_wide_heads_by_default():
    config = LGURConfig()
    assert (config.prototype_self_attention, config.prototype_num_heads, config.prototype_head_dim) == (False, 6, 512)
    model = ModelTester("lgur", prototype_num_heads=3, prototype_head_dim=40).model()
    for layer in model.unification.layers:
        assert layer.self_attention is None
        assert layer.cross_attention.in_proj_weight.shape == (3 * 3 * 40, model.config.hidden_size)
    with_self = ModelTester("lgur", prototype_self_attention=True).model()
    assert all(layer.self_attention is not None for layer in with_self.unification.layers)


def test_both_id_terms_learn_with_the_synthetic_optimiser_settings():
    """A few dozen steps with the synthetic config's optimiser (Adam 5e-4, part projections and classifiers
    at x10): both ID terms fall well below chance ln(num_ids). At N(0, 0.02) projections they stayed there."""
    from tireid_hf.training.arguments import TrainingArguments
    from tireid_hf.training.optim import build_optimizer

    num_ids = 8
    tester = ModelTester("lgur", batch_size=8, num_ids=num_ids, prototype_dim=24)
    model = tester.model(seed=0).train()
    inputs = tester.inputs()
    inputs["pids"] = torch.arange(num_ids)
    model.clip.text_model.embeddings.token_embedding.requires_grad_(False)  # CPU time only
    optimizer = build_optimizer(model, TrainingArguments(learning_rate=5e-4, head_learning_rate_multiplier=10.0,
                                                         weight_decay=4e-5))
    for _ in range(30):
        loss = model(**inputs).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        final = model.eval()(**inputs).losses
    for name in ID_TERMS:
        assert final[name].item() < 0.5 * math.log(num_ids), (name, final[name].item())
