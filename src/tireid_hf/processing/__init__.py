"""Processing outside the model: the processor (re-exported from
:mod:`tireid_hf.modeling.processing_tireid`, the file saved beside every checkpoint as remote code),
training image augmentation (:mod:`.augmentation`), caption part-of-speech spans (:mod:`.tagging`),
CADA's attribute masking (:mod:`.masking`) and the registry of text transforms the training batches
of a method need (:mod:`.text_transforms`)."""

from ..modeling.configuration_tireid import ATTRIBUTE_MASK_UNITS, CLIP_MASK_TOKEN_ID
from ..modeling.losses import IGNORE_INDEX
from ..modeling.processing_tireid import (
    CLIP_TEXT_LENGTH,
    TIReIDProcessor,
    clip_bpe_path,
    clip_tokenizer,
    clip_vocabulary,
    has_visible_text,
)
from .augmentation import TrainingImageAugmentation
from .masking import ATTRIBUTE_KINDS, mask_attribute_tokens, token_positions_of_spans
from .tagging import WORD_KINDS, key_words_only, tag_word_spans
from .text_transforms import TEXT_TRANSFORMS, TextTransform, build_text_transforms

__all__ = ["ATTRIBUTE_KINDS", "ATTRIBUTE_MASK_UNITS", "CLIP_MASK_TOKEN_ID", "CLIP_TEXT_LENGTH", "IGNORE_INDEX",
           "TEXT_TRANSFORMS", "TIReIDProcessor", "TextTransform", "TrainingImageAugmentation", "WORD_KINDS",
           "build_text_transforms", "clip_bpe_path", "clip_tokenizer", "clip_vocabulary", "has_visible_text",
           "key_words_only", "mask_attribute_tokens", "tag_word_spans", "token_positions_of_spans"]
