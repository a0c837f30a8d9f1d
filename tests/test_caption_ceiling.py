"""benchmarks/caption_ceiling.py: the caption-only oracle's R@1, against hand-computed cases."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from caption_ceiling import agrees, caption_ceiling_r1  # noqa: E402

GALLERY = [  # three identities
    {"upper_colour": "red", "backpack": "blue", "glasses": False},
    {"upper_colour": "red", "backpack": None, "glasses": True},
    {"upper_colour": "blue", "backpack": "black", "glasses": False},
]


@pytest.mark.parametrize("stated, expected", [
    ({"upper_colour": "red"}, [True, True, False]),
    ({"backpack": True}, [True, False, True]),  # "has a backpack", colour unsaid
    ({"backpack": "blue"}, [True, False, False]),
    ({"glasses": True}, [False, True, False]),
    ({"upper_colour": "red", "backpack": True}, [True, False, False]),
    ({}, [True, True, True]),
])
def test_an_identity_agrees_with_a_caption_stating_only_its_attributes(stated, expected):
    assert [agrees(stated, attributes) for attributes in GALLERY] == expected


def test_ceiling_is_the_mean_of_one_over_the_identities_each_caption_fits():
    stated = [{"upper_colour": "red"}, {"backpack": "blue"}, {}, {"upper_colour": "blue"}]
    assert caption_ceiling_r1(stated, GALLERY) == pytest.approx(100 * (1 / 2 + 1 + 1 / 3 + 1) / 4)


def test_a_caption_fitting_no_gallery_identity_is_refused():
    with pytest.raises(ValueError, match="agrees with no gallery identity"):
        caption_ceiling_r1([{"upper_colour": "green"}], GALLERY)
