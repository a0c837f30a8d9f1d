"""Pictures of what a model does: UIT's text-guided image restoration (model card, Space) and the
ranked results of a query, framed by whether they are true matches (Space).

Pure PIL + torch; not part of the remote code (``modeling/`` never imports it).
"""

from __future__ import annotations

import textwrap

import torch
from PIL import Image, ImageDraw, ImageFont

MARGIN = 8
PANEL_TITLES = ("input", "grey + masked", "restored")
MATCH_COLOURS = {True: (0, 170, 0), False: (210, 0, 0)}


def to_pil(pixel_values: torch.Tensor, image_mean, image_std) -> Image.Image:
    """[3, H, W] normalised pixels -> RGB image (``x * std + mean``, clipped to [0, 1])."""
    mean = torch.tensor(image_mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(image_std, dtype=torch.float32).view(3, 1, 1)
    rgb = (pixel_values.detach().float().cpu() * std + mean).clamp(0, 1)
    return Image.fromarray((rgb * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), mode="RGB")


def restoration_figure(model, processor, image: Image.Image, caption: str, seed: int = 0) -> Image.Image:
    """UIT's restoration of one image guided by its caption, as one picture.

    Three panels side by side — the processed colour input, the grey image with the dropped patches
    blanked (what the encoder sees), the restored colour output (predicted on the dropped patches) —
    titled above, the caption wrapped below. Layout: width ``3 W + 4 MARGIN``; height
    ``title + H + caption lines + margins`` for the processor's (H, W).

    Args:
        model: a training (not inference-only) :class:`~tireid_hf.modeling.UITModel`.
        processor: the :class:`~tireid_hf.processing.TIReIDProcessor` of the model.
        image: a PIL image; caption: its description.
        seed: seed of the random patch mask (the same seed gives the same mask).
    """
    device = next(model.parameters()).device
    inputs = processor(text=[caption], images=[image], return_tensors="pt")
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        masked_grey, restored = model.restore_image(
            inputs["pixel_values"].to(device), inputs["input_ids"].to(device), inputs["attention_mask"].to(device),
            generator=generator,
        )
    finally:
        model.train(was_training)
    mean, std = processor.image_processor.image_mean, processor.image_processor.image_std
    panels = [to_pil(pixels[0], mean, std) for pixels in (inputs["pixel_values"], masked_grey, restored)]
    return _compose(panels, PANEL_TITLES, caption)


def _compose(panels: list[Image.Image], titles, caption: str) -> Image.Image:
    """Panels side by side under their titles, the caption wrapped below."""
    font = ImageFont.load_default()
    line_height = font.getbbox("Ag")[3] + 2
    panel_width, panel_height = panels[0].size
    width = len(panels) * panel_width + (len(panels) + 1) * MARGIN
    characters = max(8, int((width - 2 * MARGIN) / max(font.getlength("x"), 1)))
    lines = textwrap.wrap(caption, width=characters) or [""]
    height = MARGIN + line_height + panel_height + MARGIN + len(lines) * line_height + MARGIN
    figure = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(figure)
    top = MARGIN + line_height
    for index, (panel, title) in enumerate(zip(panels, titles)):
        left = MARGIN + index * (panel_width + MARGIN)
        draw.text((left, MARGIN), title, fill="black", font=font)
        figure.paste(panel, (left, top))
    for index, line in enumerate(lines):
        draw.text((MARGIN, top + panel_height + MARGIN + index * line_height), line, fill="black", font=font)
    return figure


def ranked_result(image: Image.Image, relevant: bool | None, height: int = 256, frame: int = 6) -> Image.Image:
    """One ranked result for display: ``image`` scaled to ``height`` pixels (aspect kept), framed
    green when it is a true match of the query, red when it is not, unframed when unknown (None),
    as ReID toolboxes draw their ranked-result visualisations."""
    width = max(1, round(image.width * height / image.height))
    shown = image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    if relevant is not None:
        ImageDraw.Draw(shown).rectangle((0, 0, width - 1, height - 1), outline=MATCH_COLOURS[relevant], width=frame)
    return shown
