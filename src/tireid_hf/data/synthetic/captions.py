"""Template captions of synthetic pedestrians, in the style of CUHK-PEDES annotations.

Each caption mentions a random SUBSET of the identity's attributes visible from the image's view,
with synonyms and varied word order; later captions of an image favour attributes the earlier ones
left out, so that the captions of one image complement each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .attributes import Identity
from .draw import VISIBLE_FROM

SUBJECTS = {"man": ("man", "young man", "guy", "male"), "woman": ("woman", "young woman", "lady", "girl")}
NEUTRAL_SUBJECTS = ("person", "pedestrian")
PRONOUNS = {"man": "he", "woman": "she"}
BUILD_WORDS = {"slim": ("slim", "thin"), "average": ("medium-build",), "heavy": ("heavy-set", "stout")}
UPPER_WORDS = {
    "t-shirt": ("t-shirt", "short-sleeved shirt", "short-sleeved top"),
    "shirt": ("long-sleeved shirt", "shirt", "long-sleeved top"),
    "jacket": ("jacket", "zip-up jacket"),
    "coat": ("coat", "long coat", "overcoat"),
}
PATTERN_WORDS = {"striped": ("striped",), "checked": ("checked", "plaid")}
LOWER_WORDS = {"trousers": ("trousers", "pants"), "shorts": ("shorts",), "skirt": ("skirt",)}
SHOE_WORDS = ("shoes", "sneakers")
HANDBAG_WORDS = ("handbag", "purse", "shoulder bag")
HAT_WORDS = ("hat", "cap")
GLASSES_WORDS = ("glasses", "a pair of glasses", "spectacles")

# Base probability that a caption mentions each attribute group the image shows.
_MENTION_PROBABILITY = {
    "hair": 0.6, "upper": 0.9, "lower": 0.75, "shoes": 0.4,
    "backpack": 0.7, "handbag": 0.6, "hat": 0.6, "glasses": 0.5,
}


@dataclass(frozen=True)
class Caption:
    """A caption and the attributes it states: attribute name -> value (True: "has one", colour unsaid)."""

    text: str
    mentions: dict


def write_captions(identity: Identity, view: str, rng: np.random.Generator, count: int) -> list[Caption]:
    """Returns `count` captions of `identity` seen from `view`, each a random subset of its attributes."""
    shown = ["hair", "upper", "lower", "shoes"]
    shown += [g for g in ("backpack", "handbag", "hat", "glasses") if getattr(identity, g)]
    shown = [g for g in shown if view in VISIBLE_FROM.get(g, (view,))]
    said: set[str] = set()
    captions = []
    for k in range(count):
        groups = []
        for group in shown:
            p = _MENTION_PROBABILITY[group]
            p = p * 0.5 if group in said else min(1.0, p * 1.4) if k else p
            if rng.random() < p:
                groups.append(group)
        if "upper" not in groups and "lower" not in groups:
            groups.append("upper")
        said.update(groups)
        captions.append(_compose(identity, groups, rng))
    return captions


def _compose(p: Identity, groups: list[str], rng: np.random.Generator) -> Caption:
    """Returns one caption stating exactly the attribute groups in `groups` (plus, maybe, gender/build)."""
    mentions: dict = {}
    phrase = {g: _PHRASES[g](p, rng, mentions) for g in groups}
    subject = _subject(p, rng, mentions)
    pronoun = PRONOUNS[p.gender] if "gender" in mentions else f"the {subject.split()[-1]}"

    clothes = [phrase[g] for g in ("upper", "lower", "shoes") if g in phrase]
    if len(clothes) > 1 and rng.random() < 0.2:
        clothes[0], clothes[1] = clothes[1], clothes[0]
    worn = [phrase[g] for g in ("hat", "glasses") if g in phrase]
    if worn and rng.random() < 0.5:
        clothes, worn = clothes + worn, []
    hair = f" with {phrase['hair']}" if "hair" in phrase else ""

    structure = int(rng.integers(4))
    if structure == 0:
        sentences = [f"{_a(subject)}{hair} is wearing {_join(clothes)}."]
    elif structure == 1:
        sentences = [f"{_a(subject)}{hair} in {_join(clothes)}."]
    elif structure == 2:
        verb = ("wears", "is dressed in", "has on")[int(rng.integers(3))]
        sentences = [f"the {subject} {verb} {_join(clothes)}."]
        if hair:
            sentences.append(f"{pronoun} has {phrase['hair']}.")
    else:
        sentences = [f"wearing {_join(clothes)}, {_a(subject)}{hair} is walking."]
    carried = [phrase[g] for g in ("backpack", "handbag") if g in phrase]
    if carried:
        verb = ("is carrying", "carries", "has")[int(rng.integers(3))]
        sentences.append(f"{pronoun} {verb} {_join(carried)}.")
    if worn:
        verb = ("is also wearing", "also wears", "has on")[int(rng.integers(3))]
        sentences.append(f"{pronoun} {verb} {_join(worn)}.")
    return Caption(" ".join(s[0].upper() + s[1:] for s in sentences), mentions)


def _subject(p: Identity, rng: np.random.Generator, mentions: dict) -> str:
    if rng.random() < 0.15:
        return _choice(rng, NEUTRAL_SUBJECTS)
    mentions["gender"] = p.gender
    noun = _choice(rng, SUBJECTS[p.gender])
    if rng.random() < 0.3:
        mentions["build"] = p.build
        return f"{_choice(rng, BUILD_WORDS[p.build])} {noun}"
    return noun


def _hair(p: Identity, rng: np.random.Generator, mentions: dict) -> str:
    form = rng.random()
    words = []
    if form < 0.75:
        mentions["hair_length"] = p.hair_length
        words.append(p.hair_length)
    if form >= 0.5:
        mentions["hair_colour"] = p.hair_colour
        words.append(p.hair_colour)
    return " ".join(words + ["hair"])


def _upper(p: Identity, rng: np.random.Generator, mentions: dict) -> str:
    mentions["upper_colour"], mentions["upper_type"] = p.upper_colour, p.upper_type
    words = [p.upper_colour]
    if p.upper_pattern != "plain" and rng.random() < 0.7:
        mentions["upper_pattern"] = p.upper_pattern
        words.append(_choice(rng, PATTERN_WORDS[p.upper_pattern]))
    return _a(" ".join(words + [_choice(rng, UPPER_WORDS[p.upper_type])]))


def _lower(p: Identity, rng: np.random.Generator, mentions: dict) -> str:
    mentions["lower_colour"], mentions["lower_type"] = p.lower_colour, p.lower_type
    nouns = LOWER_WORDS[p.lower_type] + (("jeans",) if (p.lower_type, p.lower_colour) == ("trousers", "blue") else ())
    noun = f"{p.lower_colour} {_choice(rng, nouns)}"
    if p.lower_type == "skirt":
        return _a(noun)
    return f"a pair of {noun}" if rng.random() < 0.3 else noun


def _shoes(p: Identity, rng: np.random.Generator, mentions: dict) -> str:
    mentions["shoes_colour"] = p.shoes_colour
    return f"{p.shoes_colour} {_choice(rng, SHOE_WORDS)}"


def _bag(noun_words: tuple[str, ...], attribute: str):
    def phrase(p: Identity, rng: np.random.Generator, mentions: dict) -> str:
        colour = getattr(p, attribute)
        noun = _choice(rng, noun_words)
        if rng.random() < 0.8:
            mentions[attribute] = colour
            return _a(f"{colour} {noun}")
        mentions[attribute] = True
        return _a(noun)

    return phrase


def _glasses(p: Identity, rng: np.random.Generator, mentions: dict) -> str:
    mentions["glasses"] = True
    return _choice(rng, GLASSES_WORDS)


_PHRASES = {
    "hair": _hair, "upper": _upper, "lower": _lower, "shoes": _shoes,
    "backpack": _bag(("backpack",), "backpack"), "handbag": _bag(HANDBAG_WORDS, "handbag"),
    "hat": _bag(HAT_WORDS, "hat"), "glasses": _glasses,
}


def _choice(rng: np.random.Generator, values: tuple[str, ...]) -> str:
    return values[int(rng.integers(len(values)))]


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
