"""benchmarks/gallery_size.py: R@1 on random sub-galleries of a test split, against hand-computed cases."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from gallery_size import gallery_size_metrics  # noqa: E402

# 3 identities, one image and one caption each; caption 0 prefers identity 2's image (0.9 > 0.5), the others
# rank their own image first. Whole gallery: R@1 2/3. Sub-galleries of 2 identities: {0, 1} and {1, 2} 100,
# {0, 2} 50 (caption 0 wrong again, caption 2 right).
SIMILARITY = torch.tensor([[0.5, 0.1, 0.9],
                           [0.1, 0.9, 0.2],
                           [0.1, 0.2, 0.8]])
PIDS = torch.tensor([0, 1, 2])


def test_a_sub_gallery_keeps_its_identities_captions_and_images_only():
    results = gallery_size_metrics(SIMILARITY, PIDS, PIDS, identities=2, draws=60)
    r1 = [result["R1"] for result in results]
    assert set(r1) == {50.0, 100.0}  # 60 draws of 3 pairs: both kinds come up
    assert all(result["num_queries"] == 2 for result in results)
    assert 0.15 < r1.count(50.0) / len(r1) < 0.55  # the pair {0, 2} is one of 3 equally likely


def test_all_identities_give_the_whole_split_and_the_draws_follow_the_seed():
    (whole,) = gallery_size_metrics(SIMILARITY, PIDS, PIDS, identities=3, draws=1)
    assert whole["R1"] == pytest.approx(200 / 3)
    assert (gallery_size_metrics(SIMILARITY, PIDS, PIDS, 2, 20, seed=3)
            == gallery_size_metrics(SIMILARITY, PIDS, PIDS, 2, 20, seed=3))


@pytest.mark.parametrize("identities", [0, 4])
def test_a_sub_gallery_size_outside_the_split_names_the_argument(identities):
    with pytest.raises(ValueError, match=r"--identities must be in 1\.\.3"):
        gallery_size_metrics(SIMILARITY, PIDS, PIDS, identities=identities, draws=1)
