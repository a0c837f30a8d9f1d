"""Pictures of what a model does: UIT's text-guided image restoration (model card, Space) and the
ranked results of queries, framed by whether they are true matches (Space, ``tireid visualize``,
the zoo report).

Pure PIL + torch; not part of the remote code (``modeling/`` never imports it).
"""

from __future__ import annotations

import random
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image, ImageDraw, ImageFont

from .retrieval import GalleryIndex, split_queries

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
        model: a model whose ``can_restore_images`` is true (a training, not inference-only, UIT model).
        processor: the :class:`~tireid_hf.processing.TIReIDProcessor` of the model.
        image: a PIL image; caption: its description.
        seed: seed of the random patch mask (the same seed gives the same mask).
    """
    if not model.can_restore_images:
        raise ValueError(f"{type(model).__name__} cannot restore images (can_restore_images is False: another method, "
                         "or an inference-only model without its restoration decoder)")
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


@dataclass
class RankedQuery:
    """One query's top-k results, best first: the gallery images, whether each shows the query's
    identity (None where the query's identity is unknown, e.g. free text) and the scores."""

    text: str
    pid: int | None
    images: list[Image.Image]
    relevant: list[bool | None]
    scores: list[float]

    @property
    def first_match(self) -> int | None:
        """1-based rank of the first true match among the shown results, None if there is none."""
        return next((rank for rank, hit in enumerate(self.relevant, start=1) if hit), None)


def choose_queries(pids: Sequence[int], num_queries: int, seed: int = 0) -> list[int]:
    """Indices of ``num_queries`` queries of distinct identities: the identities are drawn with
    ``random.Random(seed)`` from the sorted distinct ``pids``, each contributing its first query."""
    first_of = {}
    for position, pid in enumerate(pids):
        first_of.setdefault(int(pid), position)
    if not 1 <= num_queries <= len(first_of):
        raise ValueError(f"num_queries must be between 1 and the number of identities ({len(first_of)}), got {num_queries}")
    chosen = random.Random(seed).sample(sorted(first_of), num_queries)
    return [first_of[pid] for pid in chosen]


def rank_split_queries(
    model,
    processor,
    split_dataset,
    *,
    query_indices: Sequence[int] = (),
    texts: Sequence[str] = (),
    k: int = 10,
    rerank: bool = False,
    rerank_k: int | None = None,
    batch_size: int = 64,
    show_progress: bool = True,
) -> list[RankedQuery]:
    """Search the split's gallery (every image) with some of its captions and/or free texts.

    Args:
        split_dataset (`datasets.Dataset`): one row per image with ``image``, ``pid``, ``captions``.
        query_indices: positions in the split's caption list (:func:`~tireid_hf.retrieval.split_queries`
            order); their identity is known, so results are marked right or wrong.
        texts: free-text queries (results unmarked).
        k, rerank, rerank_k: as :meth:`~tireid_hf.retrieval.GalleryIndex.search`.
    """
    captions, caption_pids = split_queries(split_dataset)
    for position in query_indices:
        if not 0 <= position < len(captions):
            raise ValueError(f"query index {position} is out of range: the split has {len(captions)} captions "
                             f"(0 to {len(captions) - 1})")
    queries = [(captions[i], caption_pids[i]) for i in query_indices] + [(text, None) for text in texts]
    if not queries:
        raise ValueError("no queries: give query indices or texts")
    index = GalleryIndex.build(model, processor, split_dataset["image"], batch_size=batch_size, show_progress=show_progress)
    results = index.search([text for text, _ in queries], k=k, rerank=rerank, rerank_k=rerank_k)
    image_pids = [int(pid) for pid in split_dataset["pid"]]
    ranked = []
    for (text, pid), shown, scores in zip(queries, results.indices.tolist(), results.scores.tolist()):
        ranked.append(RankedQuery(
            text, pid, [split_dataset[position]["image"] for position in shown],
            [None if pid is None else image_pids[position] == pid for position in shown], scores,
        ))
    return ranked


def ranked_results_figure(queries: Sequence[RankedQuery], title: str = "", thumbnail_height: int = 128,
                          text_width: int = 240) -> Image.Image:
    """One row per query: the query text (wrapped, with its identity and the rank of its first
    true match) in a ``text_width`` column, then its results left to right, each labelled
    ``#rank score`` and drawn by :func:`ranked_result` (green frame: true match, red: another person).

    Size: width ``text_width + k * (cell + MARGIN) + 2 MARGIN`` where ``cell`` is the widest
    thumbnail at ``thumbnail_height``; height: the title and legend lines, then per row
    ``max(label line + thumbnail_height, text lines) + MARGIN``.
    """
    if not queries:
        raise ValueError("ranked_results_figure needs at least one query")
    font = ImageFont.load_default()
    line_height = font.getbbox("Ag")[3] + 2
    thumbnails = [[ranked_result(image, hit, height=thumbnail_height, frame=max(2, thumbnail_height // 32))
                   for image, hit in zip(query.images, query.relevant)] for query in queries]
    cell = max((thumbnail.width for row in thumbnails for thumbnail in row), default=0)
    columns = max(len(row) for row in thumbnails)
    characters = max(8, int(text_width / max(font.getlength("x"), 1)))
    blocks = [textwrap.wrap(query.text, width=characters) + [""] + _query_summary(query) for query in queries]
    heights = [max(line_height + thumbnail_height, len(lines) * line_height) for lines in blocks]
    header = [title] if title else []
    header.append("green frame: the query's identity; red: another person")
    width = 2 * MARGIN + text_width + columns * (cell + MARGIN)
    height = MARGIN + len(header) * line_height + sum(row_height + MARGIN for row_height in heights)
    figure = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(figure)
    for index, line in enumerate(header):
        draw.text((MARGIN, MARGIN + index * line_height), line, fill="black", font=font)
    top = MARGIN + len(header) * line_height
    for query, row, lines, row_height in zip(queries, thumbnails, blocks, heights):
        draw.line((MARGIN, top, width - MARGIN, top), fill=(200, 200, 200))
        for index, line in enumerate(lines):
            draw.text((MARGIN, top + MARGIN // 2 + index * line_height), line, fill="black", font=font)
        for column, (thumbnail, score) in enumerate(zip(row, query.scores)):
            left = 2 * MARGIN + text_width + column * (cell + MARGIN)
            draw.text((left, top + MARGIN // 2), f"#{column + 1} {score:.2f}", fill="black", font=font)
            figure.paste(thumbnail, (left, top + MARGIN // 2 + line_height))
        top += row_height + MARGIN
    return figure


def _query_summary(query: RankedQuery) -> list[str]:
    if query.pid is None:
        return ["free text (identity unknown)"] + ([] if query.images else ["no match above the score threshold"])
    first = query.first_match
    found = f"first true match: #{first}" if first else f"no true match in the top {len(query.relevant)}"
    return [f"identity {query.pid}", found]
