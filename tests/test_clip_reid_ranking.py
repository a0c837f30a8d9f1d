"""The baseline's `ranking` option (LGUR's semi-hard ranking loss on CLIP's global embedding) against a
hand-computed case, and LGUR's split row that trains it."""

import pytest
import torch

from tireid_hf.modeling import ClipReIDConfig, LGURConfig
from tester import ModelTester

# Images e_0, e_1, e_2 and unit texts t_0 = (.8, .6, 0), t_1 = (0, .8, .6), t_2 = (.6, 0, .8), so
# s = image @ text^T = [[.8, 0, .6], [.6, .8, 0], [0, .6, .8]], pids [0, 1, 1].
IMAGES = torch.eye(3)
TEXTS = torch.tensor([[0.8, 0.6, 0.0], [0.0, 0.8, 0.6], [0.6, 0.0, 0.8]])
PIDS = torch.tensor([0, 1, 1])
# margin .3, negatives = other identities:
#   image 0: texts 1 (0: easy, 0 < .8 - .3), 2 (.6: semi-hard)  -> .3 + .6 - .8 = .1
#   image 1: text 0 (.6: semi-hard)                              -> .3 + .6 - .8 = .1
#   image 2: text 0 (0: easy)                                    -> 0
#   text 0: images 1 (.6: semi-hard), 2 (0: easy)                -> .1
#   text 1: image 0 (0: easy)                                    -> 0
#   text 2: image 0 (.6: semi-hard)                              -> .1
# every anchor has at most one candidate, so the random draw is fixed: the sum is .4.
# margin .25: the same candidates, each hinge .25 + .6 - .8 = .05: the sum is .2.


def fixed_embedding_model(**overrides):
    model = ModelTester("clip_reid", sdm_loss_weight=0.0, id_loss_weight=0.0, **overrides).model()
    model.image_retrieval_features = lambda pixel_values: IMAGES
    model.text_retrieval_features = lambda input_ids, attention_mask: TEXTS
    return model


@pytest.mark.parametrize(("margin", "expected"), [(0.3, 0.4), (0.25, 0.2)])
@pytest.mark.parametrize("training", [True, False])
def test_ranking_term_matches_the_hand_computed_sum_over_image_and_text_anchors(margin, expected, training):
    model = fixed_embedding_model(ranking_loss_weight=2.0, ranking_margin=margin).train(training)
    output = model(pixel_values=torch.zeros(3, 3, 1, 1), input_ids=torch.zeros(3, 1, dtype=torch.long), pids=PIDS)
    assert set(output.losses) == {"ranking"}
    assert output.losses["ranking"].item() == pytest.approx(expected, abs=1e-6)
    assert output.loss.item() == pytest.approx(2 * expected, abs=1e-6)


def test_ranking_is_off_by_default_and_the_margin_must_be_positive():
    config = ClipReIDConfig()
    assert (config.ranking_loss_weight, config.ranking_margin) == (0.0, 0.3)
    tester = ModelTester("clip_reid")
    assert set(tester.model()(**tester.inputs()).losses) == {"sdm", "id"}
    with pytest.raises(ValueError, match="ranking_margin must be > 0"):
        ClipReIDConfig(ranking_margin=0.0)


def test_lgurs_split_row_trains_a_clip_reid_step_with_id_and_ranking_only():
    row = dict(LGURConfig.zoo_ablations["its losses on CLIP's embedding"])
    assert row.pop("method") == "clip_reid"
    tester = ModelTester("clip_reid", **row)
    model = tester.model().train()
    output = model(**tester.inputs())
    assert set(output.losses) == {"id", "ranking"}
    assert torch.isfinite(output.loss)
    output.loss.backward()
    assert model.clip.visual_projection.weight.grad.abs().sum() > 0
