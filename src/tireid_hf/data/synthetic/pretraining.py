"""The pretraining corpus of the zoo's small CLIP base: web-photo-like scenes with alt-text captions.

It plays, for the synthetic benchmark, the part of CLIP's web corpus for CUHK-PEDES: the same kind of
people, but a domain gap from the re-identification crops, so that the base knows colours, garments
and people without having seen the benchmark:

* **other identities**: every image draws a fresh identity from its own generator, seeded by
  ``(seed, index)`` under a seed disjoint from the benchmark's (``SyntheticConfig.seed`` is small;
  ``PRETRAINING_SEED`` is not), so the corpus is not organised in identities at all and repeats none
  on purpose (a repeat of a benchmark identity's captioned attributes has probability ~1e-4 per image);
* **other rendering**: square outdoor scenes (sky, horizon, grass or road, trees) instead of
  3:1 street crops; the person takes 45-95 % of the height, anywhere along the width, and one image in
  four is a close upper-body crop; saturated, warmer light;
* **other captions**: short alt-text naming one to three visible attributes
  (``"red jacket, black backpack"``, ``"a photo of a woman in blue jeans"``), not the benchmark's
  sentences.

>>> images, captions = pretraining_corpus(PretrainingCorpusConfig(num_images=2, image_size=32))
>>> images.shape, len(captions[0])
((2, 32, 32, 3), 2)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from .attributes import Identity, sample_identity
from .captions import _PHRASES, Caption, _subject
from .draw import VIEWS, VISIBLE_FROM, draw_figure

PRETRAINING_SEED = 20_240_917
_SUPERSAMPLING = 2  # scenes are drawn at twice the size, then box-filtered down (smoother edges)
_CLOSE_UP_PROBABILITY = 0.25
_LOWER_BODY = ("lower", "shoes")
_SKIES = ((110, 160, 230), (190, 210, 235), (240, 170, 110), (150, 150, 170))  # blue, hazy, sunset, overcast
_GROUNDS = ((70, 140, 60), (120, 120, 125), (200, 180, 130), (90, 110, 70))  # grass, road, sand, scrub


@dataclass(frozen=True)
class PretrainingCorpusConfig:
    """Size and seed of the pretraining corpus.

    Args:
        num_images (int): scenes, one fresh identity each.
        image_size (int): side of the square scenes in pixels.
        captions_per_image (int): alt-text captions written for each scene.
        seed (int): the seed; the same config always gives the same arrays.
    """

    num_images: int = 20_000
    image_size: int = 64
    captions_per_image: int = 2
    seed: int = PRETRAINING_SEED

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < (0 if name == "seed" else 1):
                raise ValueError(f"PretrainingCorpusConfig.{name} must be a positive int, got {value!r}")


def pretraining_corpus(config: PretrainingCorpusConfig, progress: bool = False) -> tuple[np.ndarray, list[list[str]]]:
    """Returns the scenes, uint8 [num_images, image_size, image_size, 3], and their captions
    (``captions_per_image`` strings each). Scene ``i`` depends only on ``(config.seed, i)``."""
    images = np.empty((config.num_images, config.image_size, config.image_size, 3), dtype=np.uint8)
    captions = []
    for index in tqdm(range(config.num_images), desc="pretraining corpus", unit="image", disable=not progress):
        rng = np.random.default_rng([config.seed, index])
        identity = sample_identity(rng)
        image, visible = render_scene(identity, rng, config.image_size)
        images[index] = np.asarray(image)
        captions.append([write_alt_text(identity, visible, rng).text for _ in range(config.captions_per_image)])
    return images, captions


def render_scene(identity: Identity, rng: np.random.Generator, size: int) -> tuple[Image.Image, tuple[str, ...]]:
    """Returns a ``size`` x ``size`` outdoor scene with `identity` in it, and the attribute groups
    visible in it (a close-up crops the legs and shoes away; glasses only from the front or side)."""
    canvas = size * _SUPERSAMPLING
    view = VIEWS[int(rng.integers(len(VIEWS)))]
    image = _outdoor_background(rng, canvas)
    close_up = rng.random() < _CLOSE_UP_PROBABILITY
    if close_up:  # the head near the top, the figure cut at the hips
        figure_height = canvas * rng.uniform(1.5, 1.9)
        top = canvas * rng.uniform(0.02, 0.12)
    else:
        figure_height = canvas * rng.uniform(0.45, 0.95)
        top = canvas * rng.uniform(0.98, 1.0) - figure_height
    cx = canvas * rng.uniform(0.25, 0.75)
    draw_figure(image, identity, view, rng, figure_height, top, cx)
    image = _warm_light(image.resize((size, size), Image.Resampling.BOX), rng)
    visible = ["hair", "upper", "lower", "shoes"] + [g for g in ("backpack", "handbag", "hat", "glasses") if getattr(identity, g)]
    visible = [g for g in visible if view in VISIBLE_FROM.get(g, (view,)) and not (close_up and g in _LOWER_BODY)]
    return image, tuple(visible)


def write_alt_text(identity: Identity, visible: tuple[str, ...], rng: np.random.Generator) -> Caption:
    """Returns a short alt-text caption naming one to three of the `visible` attribute groups, e.g.
    ``"red jacket, black backpack"`` or ``"a photo of a woman in blue jeans"``, and what it states."""
    count = min(len(visible), int(rng.integers(1, 4)))
    groups = [visible[i] for i in sorted(rng.choice(len(visible), size=count, replace=False))]
    mentions: dict = {}
    phrases = [_without_article(_PHRASES[g](identity, rng, mentions)) for g in groups]
    listed = ", ".join(phrases)
    form = int(rng.integers(4))
    if form == 0:
        return Caption(listed, mentions)
    subject = _subject(identity, rng, mentions)
    if form == 1:
        text = f"a photo of a {subject} {'with' if 'hair' in groups else 'in'} {listed}"
    elif form == 2:
        text = f"{subject} {'with' if 'hair' in groups else 'wearing'} {listed}"
    else:
        text = f"{listed}, {subject}, outdoors"
    return Caption(text, mentions)


def _without_article(phrase: str) -> str:
    for article in ("a pair of ", "an ", "a "):
        if phrase.startswith(article):
            return phrase[len(article):]
    return phrase


def _outdoor_background(rng: np.random.Generator, size: int) -> Image.Image:
    """A saturated outdoor scene: a sky gradient above a horizon at 35-65 % of the height, a ground of
    grass, road, sand or scrub below, and a few trees or bushes."""
    sky = np.array(_SKIES[int(rng.integers(len(_SKIES)))], dtype=np.float64) + rng.uniform(-15, 15, 3)
    ground = np.array(_GROUNDS[int(rng.integers(len(_GROUNDS)))], dtype=np.float64) + rng.uniform(-15, 15, 3)
    horizon = int(size * rng.uniform(0.35, 0.65))
    rows = np.linspace(0.0, 1.0, size)[:, None]
    column = np.where(rows * size < horizon, sky * (1.15 - 0.3 * rows), ground * (0.8 + 0.3 * rows))
    array = np.broadcast_to(np.clip(column, 0, 255)[:, None, :], (size, size, 3)).astype(np.uint8)
    image = Image.fromarray(array)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, 4))):
        x, radius = rng.uniform(0, size), rng.uniform(0.06, 0.2) * size
        green = (int(rng.uniform(20, 70)), int(rng.uniform(90, 160)), int(rng.uniform(20, 70)))
        draw.ellipse([x - radius, horizon - 1.6 * radius, x + radius, horizon + 0.2 * radius], fill=green)
    return image


def _warm_light(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """More saturated colours and a warm cast: ``x' = mean + s (x - mean) + cast``, s in [1.1, 1.4]."""
    array = np.asarray(image, dtype=np.float32)
    mean = array.mean(axis=-1, keepdims=True)
    array = mean + rng.uniform(1.1, 1.4) * (array - mean) + np.array([rng.uniform(0, 15), rng.uniform(-5, 5), rng.uniform(-15, 0)])
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
