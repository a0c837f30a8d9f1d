"""TIReIDProcessor: CLIP image preprocessing at the model's rectangular size + the CLIP tokenizer.

This file is saved beside every checkpoint (``processor_config.json`` names it in its ``auto_map``),
so ``AutoProcessor.from_pretrained(folder, trust_remote_code=True)`` builds the full processor
without tireid-hf installed: it imports only the standard library and ``transformers``.
``tireid_hf.processing`` re-exports everything here.

The CLIP BPE merges ship inside the tireid-hf package (``tireid_hf/clip_vocabulary/clip_bpe_merges.txt.gz``:
the part of OpenAI's ``bpe_simple_vocab_16e6.txt.gz`` that CLIP uses, see the NOTE there), so a plain
``pip install tireid-hf`` tokenises; :func:`clip_tokenizer` turns them into a `transformers`
``CLIPTokenizer`` identical to OpenAI CLIP's, with no Hub access. Only building a NEW processor needs
them: a saved processor carries its tokenizer in ``tokenizer.json`` (so this file as remote code,
without the package, loads any saved processor).
"""

from __future__ import annotations

import gzip
import os
import unicodedata
from functools import lru_cache
from pathlib import Path

from transformers import CLIPImageProcessorPil, CLIPTokenizer, ProcessorMixin
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

CLIP_TEXT_LENGTH = 77
_NUM_MERGES = 49152 - 256 - 2  # CLIP keeps the first 48,894 merges of OpenAI's file


def clip_bpe_path() -> Path:
    """Path of CLIP's BPE merges shipped in the tireid-hf package (``tireid_hf/clip_vocabulary/``)."""
    path = Path(__file__).resolve().parent.parent / "clip_vocabulary" / "clip_bpe_merges.txt.gz"
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: building a new CLIP tokenizer needs the tireid-hf package "
                           "(pip install tireid-hf); a saved processor loads its tokenizer.json without it")
    return path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from the 256 byte values to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    characters = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            characters.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, characters)))


@lru_cache(maxsize=1)
def clip_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary (49,408 tokens) and merges, built exactly as OpenAI's ``SimpleTokenizer``:
    byte symbols, the same with ``</w>``, one token per merge, then the two special tokens."""
    with gzip.open(clip_bpe_path(), "rt", encoding="utf-8") as file:
        lines = file.read().split("\n")[1 : _NUM_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    if len(merges) != _NUM_MERGES or any(len(merge) != 2 for merge in merges):
        raise RuntimeError(f"{clip_bpe_path()}: expected {_NUM_MERGES} merges of two symbols each; the file is damaged")
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [symbol + "</w>" for symbol in symbols] + ["".join(merge) for merge in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}, merges


def clip_tokenizer(model_max_length: int = CLIP_TEXT_LENGTH) -> CLIPTokenizer:
    """OpenAI CLIP's tokenizer (lower-cased BPE, ``<|startoftext|>`` ... ``<|endoftext|>``, padded
    with ``<|endoftext|>``), built offline from the merges shipped in the package."""
    vocabulary, merges = clip_vocabulary()
    return CLIPTokenizer(vocab=dict(vocabulary), merges=list(merges), model_max_length=model_max_length)


# Unicode categories that print nothing: controls, format characters (zero-width space and joiners,
# BOM, direction marks), surrogates, private use, unassigned, and separators (spaces, line breaks).
_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}
# The fewest tokens a byte-level BPE vocabulary can have: every byte, alone and word-final.
_MIN_VOCABULARY = 2 * 256


def has_visible_text(text) -> bool:
    """Whether ``text`` is a string with at least one character that prints (not only whitespace,
    control or zero-width characters)."""
    return isinstance(text, str) and any(unicodedata.category(character) not in _INVISIBLE_CATEGORIES for character in text)


class TIReIDProcessor(ProcessorMixin):
    """CLIP image processor at (height, width) without centre crop + CLIP tokenizer.

    ``processor(text=[...])`` gives ``input_ids``/``attention_mask`` padded to the longest caption and
    TRUNCATED to ``tokenizer.model_max_length`` (77) tokens, the end-of-text token kept;
    ``processor(images=[...])`` gives ``pixel_values`` [N, 3, height, width].
    """

    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        super().__init__(image_processor, tokenizer)

    @classmethod
    def for_image_size(cls, image_size: tuple[int, int] = (384, 128), tokenizer: CLIPTokenizer | None = None):
        """A processor for ``image_size`` (height, width) with CLIP's mean/std and bicubic resize."""
        height, width = image_size
        image_processor = CLIPImageProcessorPil(
            size={"height": height, "width": width}, do_center_crop=False,
            image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD,
        )
        return cls(image_processor=image_processor, tokenizer=tokenizer or clip_tokenizer())

    def __call__(self, text=None, images=None, return_tensors="pt", **kwargs):
        if text is None and images is None:
            raise ValueError("TIReIDProcessor needs `text`, `images` or both")
        encoding = {}
        if text is not None:
            texts = [text] if isinstance(text, str) else list(text)
            empty = [index for index, caption in enumerate(texts) if not has_visible_text(caption)]
            if empty:
                raise ValueError("text: captions must be strings with visible characters; got empty, invisible-only or "
                                 f"non-string captions at positions {empty[:10]}")
            encoding.update(self.tokenizer(
                texts, padding=kwargs.pop("padding", True), truncation=True,
                max_length=self.tokenizer.model_max_length, return_tensors=return_tensors,
            ))
        if images is not None:
            encoding.update(self.image_processor(images=images, return_tensors=return_tensors))
        return encoding

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """``ProcessorMixin.from_pretrained``, refusing a folder whose tokenizer did not load (without
        ``tokenizer.json`` transformers would build a 2-token tokenizer and every caption would encode
        to the same ids)."""
        folder = Path(os.fspath(pretrained_model_name_or_path))
        if folder.is_dir() and not (folder / "tokenizer.json").is_file():
            raise FileNotFoundError(f"{folder / 'tokenizer.json'} is missing: the processor's tokenizer cannot be "
                                    "loaded (save the processor again with save_pretrained)")
        processor = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        if len(processor.tokenizer) < _MIN_VOCABULARY:
            raise OSError(f"{pretrained_model_name_or_path}: the tokenizer loaded with only {len(processor.tokenizer)} "
                          "tokens (is tokenizer.json missing or empty?)")
        return processor

    @property
    def image_size(self) -> tuple[int, int]:
        size = self.image_processor.size
        return size["height"], size["width"]




TIReIDProcessor.register_for_auto_class("AutoProcessor")
