"""Procedural drawing of one synthetic pedestrian image with PIL and numpy.

The figure is built from large flat regions (hair, upper garment, lower garment, shoes, bags, hat)
in the identity's colours; each image varies the viewpoint, pose, scale, position, background
clutter, lighting and, sometimes, a partial occlusion, all drawn from the image's own generator.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .attributes import COLOURS, HAIR_COLOURS, SKIN_TONES, Identity

VIEWS = ("front", "back", "side")
VISIBLE_FROM = {"glasses": ("front", "side")}  # attributes not visible from every view

_BUILD_WIDTH = {"slim": 0.85, "average": 1.0, "heavy": 1.18}
_OCCLUSION_PROBABILITY = 0.15


def render_person(identity: Identity, view: str, rng: np.random.Generator, height: int = 192, width: int = 64) -> Image.Image:
    """Returns an RGB image (`width` x `height`) of `identity` seen from `view`, jittered by `rng`."""
    image = _background(rng, height, width)
    figure_height = height * rng.uniform(0.80, 0.93)
    top = height - height * rng.uniform(0.01, 0.05) - figure_height
    cx = width / 2 + rng.uniform(-0.07, 0.07) * width
    draw_figure(image, identity, view, rng, figure_height, top, cx)
    if rng.random() < _OCCLUSION_PROBABILITY:
        _occlude(ImageDraw.Draw(image), rng, height, width)
    return _light(image, rng)


def draw_figure(image: Image.Image, identity: Identity, view: str, rng: np.random.Generator,
                figure_height: float, top: float, cx: float) -> None:
    """Draws `identity` seen from `view` onto `image` in place: the figure is `figure_height` pixels
    tall (eight head heights), its head at row `top`, centred on column `cx`; pose jitter from `rng`."""
    mirror = view == "side" and rng.random() < 0.5
    _Figure(identity, view, rng, ImageDraw.Draw(image), figure_height / 8.0, top, cx, mirror).draw()


def _background(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """Returns a muted vertical gradient with a few low-contrast blocks (walls, windows, poles) and a ground band."""
    grey = rng.uniform(90, 190)
    top, bottom = (grey + rng.uniform(-25, 25, 3)), (grey + rng.uniform(-25, 25, 3))
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    array = np.broadcast_to(top * (1 - t) + bottom * t, (height, width, 3)).astype(np.uint8)
    image = Image.fromarray(array)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 5))):
        x0, y0 = rng.uniform(-0.2, 1.0) * width, rng.uniform(0.0, 0.8) * height
        w, h = rng.uniform(0.1, 0.6) * width, rng.uniform(0.05, 0.4) * height
        draw.rectangle([x0, y0, x0 + w, y0 + h], fill=_muted(rng, grey))
    ground = height * rng.uniform(0.78, 0.9)
    draw.rectangle([0, ground, width, height], fill=_muted(rng, grey * 0.8))
    return image


def _muted(rng: np.random.Generator, around: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(around + rng.uniform(-30, 30), 0, 255)) for _ in range(3))


def _occlude(draw: ImageDraw.ImageDraw, rng: np.random.Generator, height: int, width: int) -> None:
    """Draws a muted obstacle: a low object over the legs or a pole across the body."""
    fill = _muted(rng, rng.uniform(60, 160))
    if rng.random() < 0.5:
        draw.rectangle([0, height * rng.uniform(0.75, 0.88), width, height], fill=fill)
    else:
        x = rng.uniform(0, width)
        draw.rectangle([x, 0, x + width * rng.uniform(0.06, 0.14), height], fill=fill)


def _light(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Returns `image` under a random brightness, colour cast and mild sensor noise."""
    array = np.asarray(image, dtype=np.float32)
    array = array * rng.uniform(0.8, 1.15) + rng.uniform(-10, 10, 3) + rng.normal(0.0, 3.0, array.shape)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


class _Figure:
    """Draws one person: coordinates are in head units `u` from the top of the figure at `top`."""

    def __init__(self, identity, view, rng, draw, u, top, cx, mirror):
        self.p, self.view, self.rng, self.d, self.u, self.top, self.cx = identity, view, rng, draw, u, top, cx
        self.side = -1.0 if mirror else 1.0  # side view: +1 faces right
        shoulder = 0.72 * _BUILD_WIDTH[identity.build] * (0.92 if identity.gender == "woman" else 1.0)
        self.half = shoulder * (0.55 if view == "side" else 1.0)  # torso half-width at the shoulders
        self.skin = SKIN_TONES[identity.skin]
        self.upper = COLOURS[identity.upper_colour]
        self.lower = COLOURS[identity.lower_colour]
        self.hair = HAIR_COLOURS[identity.hair_colour]
        self.bag_side = 1.0 if rng.random() < 0.5 else -1.0

    def x(self, dx: float) -> float:
        return self.cx + dx * self.u

    def y(self, dy: float) -> float:
        return self.top + dy * self.u

    def box(self, x0, y0, x1, y1):
        return [self.x(min(x0, x1)), self.y(min(y0, y1)), self.x(max(x0, x1)), self.y(max(y0, y1))]

    def limb(self, x0, y0, x1, y1, width, fill):
        self.d.line([(self.x(x0), self.y(y0)), (self.x(x1), self.y(y1))], fill=fill, width=max(1, round(width * self.u)))

    def draw(self) -> None:
        p = self.p
        if p.hair_length == "long" and self.view != "back":
            self.d.rectangle(self.box(-0.42, 0.3, 0.42, 2.1), fill=self.hair)
        if p.backpack and self.view == "side":
            back = -self.side
            self.d.rectangle(self.box(back * self.half, 1.5, back * (self.half + 0.55), 3.5), fill=COLOURS[p.backpack])
        self._legs()
        self._torso()
        if p.backpack and self.view == "back":
            self.d.rectangle(self.box(-0.62 * self.half, 1.55, 0.62 * self.half, 3.55), fill=COLOURS[p.backpack])
        if p.backpack and self.view == "front":
            for sx in (-0.55, 0.55):
                self.limb(sx * self.half, 1.25, sx * self.half, 3.0, 0.16, COLOURS[p.backpack])
        self._arms()
        self._head()
        if p.handbag:
            hx = self.bag_side * (self.half + 0.35) if self.view != "side" else 0.25 * self.side
            self.limb(hx, 3.2, hx * 0.7, 1.4, 0.07, COLOURS[p.handbag])
            self.d.rectangle(self.box(hx - 0.38, 3.2, hx + 0.38, 4.1), fill=COLOURS[p.handbag])

    def _legs(self) -> None:
        p = self.p
        if self.view == "side":
            stride = self.rng.uniform(0.4, 0.9)
            legs = ((0.0, -stride), (0.0, stride))  # (hip x, foot x)
        else:
            hip, spread = 0.42 * self.half, self.rng.uniform(0.0, 0.3)
            legs = ((-hip, -hip - spread), (hip, hip + spread))
        leg_colour = self.lower if p.lower_type == "trousers" else self.skin
        toe = 0.35 * self.side if self.view == "side" else 0.0
        for hx, fx in legs:
            kx, knee, foot = (hx + fx) / 2, 5.8, 7.7
            self.limb(hx, 4.0, kx, knee, 0.42, leg_colour)
            self.limb(kx, knee, fx, foot, 0.36, leg_colour)
            if p.lower_type == "shorts":
                self.limb(hx, 4.0, hx + (kx - hx) * 0.55, 4.0 + (knee - 4.0) * 0.55, 0.48, self.lower)
            self.d.ellipse(self.box(fx - 0.3 + toe, foot - 0.15, fx + 0.3 + toe, foot + 0.3), fill=COLOURS[p.shoes_colour])
        if p.lower_type == "skirt":
            self.d.polygon([(self.x(-0.8 * self.half), self.y(3.7)), (self.x(0.8 * self.half), self.y(3.7)),
                            (self.x(1.25 * self.half), self.y(5.5)), (self.x(-1.25 * self.half), self.y(5.5))], fill=self.lower)
        else:
            self.d.rectangle(self.box(-0.85 * self.half, 3.7, 0.85 * self.half, 4.3), fill=self.lower)

    def _torso(self) -> None:
        p = self.p
        bottom = 5.0 if p.upper_type == "coat" else 3.9
        waist = 0.85 * self.half if p.upper_type != "coat" else 1.05 * self.half
        corners = [(-self.half, 1.2), (self.half, 1.2), (waist, bottom), (-waist, bottom)]
        self.d.polygon([(self.x(a), self.y(b)) for a, b in corners], fill=self.upper)
        if p.upper_pattern != "plain":
            stripe = COLOURS["black"] if p.upper_colour in ("white", "yellow", "pink") else COLOURS["white"]
            step = 0.42 if p.upper_pattern == "striped" else 0.5
            for yy in np.arange(1.45, bottom - 0.1, step):
                w = self.half + (waist - self.half) * (yy - 1.2) / (bottom - 1.2)
                self.limb(-w, yy, w, yy, 0.13 if p.upper_pattern == "striped" else 0.07, stripe)
            if p.upper_pattern == "checked":
                for xx in np.arange(-self.half + 0.25, self.half, 0.45):
                    self.limb(xx, 1.25, xx * waist / self.half, bottom - 0.05, 0.07, stripe)
        if p.upper_type in ("jacket", "coat") and self.view == "front":
            self.limb(0.0, 1.25, 0.0, bottom, 0.08, tuple(int(c * 0.55) for c in self.upper))

    def _arms(self) -> None:
        p, rng = self.p, self.rng
        sleeve_end = 2.3 if p.upper_type == "t-shirt" else 3.7
        shoulders = (0.0,) if self.view == "side" else (-self.half - 0.12, self.half + 0.12)
        for sx in shoulders:
            out = np.sign(sx) if sx else self.side
            swing = rng.uniform(-0.25, 0.35) * out
            hx, hy = sx + swing + 0.12 * np.sign(sx), 3.9
            ex, ey = sx + (hx - sx) * (sleeve_end - 1.3) / 2.6, sleeve_end
            self.limb(sx, 1.3, ex, ey, 0.36, self.upper)
            self.limb(ex, ey, hx, hy, 0.3, self.skin)
            self.d.ellipse(self.box(hx - 0.16, hy - 0.12, hx + 0.16, hy + 0.2), fill=self.skin)

    def _head(self) -> None:
        p = self.p
        self.d.rectangle(self.box(-0.13, 0.85, 0.13, 1.25), fill=self.skin)
        head = self.box(-0.36, 0.0, 0.36, 1.0)
        if self.view == "back":
            self.d.ellipse(head, fill=self.hair)
            if p.hair_length == "long":
                self.d.rectangle(self.box(-0.42, 0.45, 0.42, 2.3), fill=self.hair)
        else:
            self.d.ellipse(head, fill=self.skin)
            if self.view == "side":
                self.d.chord(head, 90 if self.side > 0 else -90, 270 if self.side > 0 else 90, fill=self.hair)
                self.d.chord(self.box(-0.36, 0.0, 0.36, 0.7), 180, 360, fill=self.hair)
            else:
                self.d.chord(self.box(-0.38, -0.03, 0.38, 0.75), 180, 360, fill=self.hair)
        if p.glasses and self.view in VISIBLE_FROM["glasses"]:
            dark = COLOURS["black"]
            if self.view == "front":
                self.limb(-0.3, 0.45, 0.3, 0.45, 0.07, dark)
                for gx in (-0.15, 0.15):
                    self.d.rectangle(self.box(gx - 0.11, 0.38, gx + 0.11, 0.55), fill=dark)
            else:
                self.d.rectangle(self.box(0.12 * self.side, 0.38, 0.36 * self.side, 0.53), fill=dark)
        if p.hat:
            colour = COLOURS[p.hat]
            self.d.rectangle(self.box(-0.38, -0.2, 0.38, 0.3), fill=colour)
            brim = (-0.35, 0.6) if self.view == "side" and self.side > 0 else (-0.6, 0.35) if self.view == "side" else (-0.55, 0.55)
            self.d.rectangle(self.box(brim[0], 0.2, brim[1], 0.34), fill=colour)
