"""The attribute vocabulary of synthetic pedestrians and the seeded draw of unique identities."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# RGB of every colour word the generator may draw and write. Saturated and far apart, so that a
# tiny randomly initialised CLIP at 96x32 can tell them apart.
COLOURS = {
    "red": (215, 30, 35),
    "blue": (30, 75, 215),
    "green": (35, 160, 60),
    "yellow": (245, 215, 35),
    "orange": (245, 130, 25),
    "purple": (130, 45, 175),
    "pink": (250, 135, 190),
    "white": (240, 240, 240),
    "black": (25, 25, 25),
    "grey": (128, 128, 128),
    "brown": (120, 72, 35),
}
HAIR_COLOURS = {
    "black": (20, 20, 20),
    "brown": (105, 60, 25),
    "blonde": (235, 205, 100),
    "grey": (165, 165, 165),
    "ginger": (200, 85, 30),
}
SKIN_TONES = ((241, 204, 172), (214, 165, 124), (165, 114, 78), (112, 76, 52))  # drawn, never captioned

GENDERS = ("man", "woman")
BUILDS = ("slim", "average", "heavy")
HAIR_LENGTHS = ("short", "long")
UPPER_TYPES = ("t-shirt", "shirt", "jacket", "coat")
UPPER_COLOURS = ("red", "blue", "green", "yellow", "orange", "purple", "pink", "white", "black", "grey")
UPPER_PATTERNS = ("plain", "striped", "checked")
LOWER_TYPES = ("trousers", "shorts", "skirt")
LOWER_COLOURS = ("black", "blue", "grey", "white", "brown", "red", "green", "pink")
SHOE_COLOURS = ("black", "white", "brown", "red", "blue")
BAG_COLOURS = ("black", "red", "blue", "green", "yellow", "orange", "purple", "white", "brown")
HAT_COLOURS = ("black", "red", "blue", "white", "yellow", "green")
ACCESSORY_PROBABILITY = {"backpack": 0.35, "handbag": 0.25, "hat": 0.25, "glasses": 0.2}

# Attributes a caption may mention, with the values each can take (the dataset card prints this).
VOCABULARY = {
    "gender": GENDERS,
    "build": BUILDS,
    "hair_length": HAIR_LENGTHS,
    "hair_colour": tuple(HAIR_COLOURS),
    "upper_type": UPPER_TYPES,
    "upper_colour": UPPER_COLOURS,
    "upper_pattern": UPPER_PATTERNS,
    "lower_type": LOWER_TYPES,
    "lower_colour": LOWER_COLOURS,
    "shoes_colour": SHOE_COLOURS,
    "backpack": (None, *BAG_COLOURS),
    "handbag": (None, *BAG_COLOURS),
    "hat": (None, *HAT_COLOURS),
    "glasses": (False, True),
}


@dataclass(frozen=True)
class Identity:
    """One synthetic person: a unique combination of attributes. Accessories are a colour or None."""

    gender: str
    build: str
    hair_length: str
    hair_colour: str
    upper_type: str
    upper_colour: str
    upper_pattern: str
    lower_type: str
    lower_colour: str
    shoes_colour: str
    backpack: str | None
    handbag: str | None
    hat: str | None
    glasses: bool
    skin: int  # index into SKIN_TONES

    def as_dict(self) -> dict:
        """Returns the attributes as a plain dict (without the uncaptioned skin tone)."""
        attributes = asdict(self)
        del attributes["skin"]
        return attributes


def sample_identity(rng: np.random.Generator) -> Identity:
    """Returns one identity drawn from `rng` (skirts only for women; upper and lower colours differ)."""
    gender = _pick(rng, GENDERS)
    upper_colour = _pick(rng, UPPER_COLOURS)
    lower_types = LOWER_TYPES if gender == "woman" else LOWER_TYPES[:2]
    lower_colour = _pick(rng, tuple(c for c in LOWER_COLOURS if c != upper_colour))
    return Identity(
        gender=gender,
        build=_pick(rng, BUILDS),
        hair_length=_pick(rng, HAIR_LENGTHS, p=(0.7, 0.3) if gender == "man" else (0.3, 0.7)),
        hair_colour=_pick(rng, tuple(HAIR_COLOURS)),
        upper_type=_pick(rng, UPPER_TYPES),
        upper_colour=upper_colour,
        upper_pattern=_pick(rng, UPPER_PATTERNS, p=(0.6, 0.25, 0.15)),
        lower_type=_pick(rng, lower_types),
        lower_colour=lower_colour,
        shoes_colour=_pick(rng, SHOE_COLOURS),
        backpack=_pick(rng, BAG_COLOURS) if rng.random() < ACCESSORY_PROBABILITY["backpack"] else None,
        handbag=_pick(rng, BAG_COLOURS) if rng.random() < ACCESSORY_PROBABILITY["handbag"] else None,
        hat=_pick(rng, HAT_COLOURS) if rng.random() < ACCESSORY_PROBABILITY["hat"] else None,
        glasses=bool(rng.random() < ACCESSORY_PROBABILITY["glasses"]),
        skin=int(rng.integers(len(SKIN_TONES))),
    )


def sample_unique_identities(count: int, seed: int) -> list[Identity]:
    """Returns `count` identities, pairwise different in their captioned attributes, drawn from `seed`."""
    rng = np.random.default_rng([seed, 0])
    seen: set[tuple] = set()
    identities: list[Identity] = []
    while len(identities) < count:
        identity = sample_identity(rng)
        key = tuple(vars(identity).values())[:-1]  # all captioned fields (skin is last)
        if key not in seen:
            seen.add(key)
            identities.append(identity)
    return identities


def _pick(rng: np.random.Generator, values: tuple, p: tuple | None = None):
    return values[int(rng.choice(len(values), p=p))]
