"""Every loss term against a case computed by hand (plain `math`, not the function under test)."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tireid_hf.modeling import losses


def test_sdm_distinct_identities_matches_hand_computation():
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    eps = 1e-8
    p_right, p_wrong = math.e / (math.e + 1), 1 / (math.e + 1)
    row = p_right * (math.log(p_right) - math.log(1 + eps)) + p_wrong * (math.log(p_wrong) - math.log(eps))
    expected = 2 * row  # two identical rows, and the columns give the same again: mean(rows) + mean(columns)
    assert losses.sdm_loss(logits, torch.tensor([0, 1])).item() == pytest.approx(expected, rel=1e-5)


def test_sdm_is_zero_when_prediction_matches_shared_identity():
    # both pairs are one identity: the target row is (1/2, 1/2) and uniform logits predict exactly that
    value = losses.sdm_loss(torch.zeros(2, 2), torch.tensor([7, 7])).item()
    assert value == pytest.approx(0.0, abs=1e-6)


def test_sdm_is_asymmetric_in_rows_and_columns():
    logits = torch.tensor([[3.0, 0.0, 1.0], [0.5, 2.0, 0.0], [0.0, 0.0, 0.0]])
    pids = torch.tensor([0, 1, 1])
    targets = [[1, 0, 0], [0, 0.5, 0.5], [0, 0.5, 0.5]]
    eps = 1e-8

    def kl_rows(matrix):
        total = 0.0
        for i, row in enumerate(matrix):
            norm = sum(math.exp(x) for x in row)
            total += sum(math.exp(x) / norm * (x - math.log(norm) - math.log(targets[i][j] + eps)) for j, x in enumerate(row))
        return total / len(matrix)

    rows = logits.tolist()
    columns = logits.t().tolist()
    expected = kl_rows(rows) + kl_rows(columns)
    assert losses.sdm_loss(logits, pids).item() == pytest.approx(expected, rel=1e-5)


def test_id_loss_matches_hand_computation():
    image_logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    text_logits = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    pids = torch.tensor([0, 1])
    ce_image = (-math.log(math.e**2 / (math.e**2 + 1)) - math.log(0.5)) / 2
    ce_text = (-math.log(1 / (1 + math.e)) - math.log(0.5)) / 2
    assert losses.id_loss(image_logits, text_logits, pids).item() == pytest.approx((ce_image + ce_text) / 2, rel=1e-6)


def test_hardest_negative_triplet_matches_hand_computation():
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    texts = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]])
    pids = torch.tensor([0, 0, 1])
    # s = texts @ images^T = [[.8, .6, .96], [0, 1, .8], [1, 0, .6]]
    # text anchors:  [.05+.96-.8]+ = .21, [.05+.8-1]+ = 0, [.05+1-.6]+ = .45     -> mean .22
    # image anchors: [.05+1-.8]+ = .25,  [.05+0-1]+ = 0,  [.05+.96-.6]+ = .41    -> mean .22
    value = losses.hardest_negative_triplet_loss(images, texts, pids, margin=0.05)
    assert value.item() == pytest.approx(0.44, abs=1e-6)


def test_triplet_without_any_negative_is_zero_and_gradient_flows_through_chosen_pairs():
    images = torch.nn.functional.normalize(torch.randn(3, 4), dim=1).requires_grad_()
    texts = torch.nn.functional.normalize(torch.randn(3, 4), dim=1)
    assert losses.hardest_negative_triplet_loss(images, texts, torch.tensor([1, 1, 1]), margin=0.3).item() == 0.0
    loss = losses.hardest_negative_triplet_loss(images, texts, torch.tensor([0, 1, 2]), margin=2.0)
    loss.backward()  # margin 2 > any cosine gap: every hinge is active, every image gets a gradient
    assert (images.grad.abs().sum(dim=1) > 0).all()


def test_masked_patch_mse_matches_hand_computation_with_both_sides_nonzero():
    predicted = torch.tensor([[[2.0, 1.0], [7.0, 7.0]]])
    target = torch.tensor([[[1.0, 3.0], [0.0, 0.0]]])
    masked = torch.tensor([[True, False]])  # only the first patch: ((2 - 1)^2 + (1 - 3)^2) / 2
    assert losses.masked_patch_mse(predicted, target, masked).item() == pytest.approx(2.5)
    assert losses.masked_patch_mse(predicted, target, masked.float()).item() == pytest.approx(2.5)


def semi_hard_expectation_by_definition(similarity, pids, margin, hard_fallback):
    """The documented expectation of the semi-hard ranking loss, anchor by anchor (rows, then columns)."""
    total = 0.0
    for matrix in (similarity, [list(column) for column in zip(*similarity)]):
        for i, row in enumerate(matrix):
            negatives = [j for j in range(len(row)) if pids[j] != pids[i]]
            semi_hard = [j for j in negatives if row[i] - margin < row[j] < row[i]]
            candidates = semi_hard or ([j for j in negatives if row[j] >= row[i]] if hard_fallback else [])
            if candidates:
                total += sum(max(0.0, margin + row[j] - row[i]) for j in candidates) / len(candidates)
    return total


# unit vectors whose cosines are exactly -1, 0 or 1, so that similarities land exactly ON the boundaries
# of the candidate sets (s_ij == s_ii, s_ij == s_ii - margin)
AXES = st.sampled_from([(1.0, 0.0, 0.0), (-1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, 1.0)])


@given(data=st.data(), size=st.integers(2, 6), margin=st.sampled_from([0.5, 1.0, 2.0]), hard_fallback=st.booleans())
def test_property_semi_hard_ranking_expectation_follows_the_candidate_sets_on_their_boundaries(data, size, margin,
                                                                                             hard_fallback):
    anchors = torch.tensor(data.draw(st.lists(AXES, min_size=size, max_size=size)))
    paired = torch.tensor(data.draw(st.lists(AXES, min_size=size, max_size=size)))
    pids = data.draw(st.lists(st.integers(0, 2), min_size=size, max_size=size))
    similarity = (anchors @ paired.t()).tolist()
    expected = semi_hard_expectation_by_definition(similarity, pids, margin, hard_fallback)
    value = losses.semi_hard_ranking_loss(anchors, paired, torch.tensor(pids), margin, expected=True,
                                          hard_fallback=hard_fallback)
    assert value.item() == pytest.approx(expected, rel=1e-6, abs=1e-6)  # a float32 sum


def test_relation_kl_refuses_matrices_of_different_shapes_naming_both():
    with pytest.raises(ValueError, match=r"student_logits \[2, 2\] and teacher_logits \[3, 3\] differ"):
        losses.relation_kl_loss(torch.zeros(2, 2), torch.zeros(3, 3))
