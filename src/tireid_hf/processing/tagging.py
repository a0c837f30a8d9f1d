"""Part-of-speech spans of captions and the key-word reduction of UIT's text augmentation.

Part-of-speech tags (CADA masks attribute words, UIT keeps key words) come from TextBlob's
``PatternTagger``: a Brill-style lexicon + contextual-rule tagger (Penn Treebank tags) whose model
files ship INSIDE the textblob wheel, so it runs offline (NLTK's tagger data is a separate download
that is not available here). It tags a caption in ~40 us; :func:`tag_word_spans` is still meant to
run ONCE per caption (at dataset preparation), never per training step.
"""

from __future__ import annotations

from functools import lru_cache

# Word kinds and the Penn Treebank tag prefixes that make them.
WORD_KINDS = {"noun": ("NN",), "adjective": ("JJ",), "pronoun": ("PRP",)}


@lru_cache(maxsize=1)
def _pattern_tagger():
    from textblob.en.taggers import PatternTagger

    return PatternTagger()


def tag_word_spans(caption: str) -> list[tuple[int, int, str]]:
    """Character spans of the nouns, adjectives and pronouns of ``caption``.

    Returns ``[(start, end, kind), ...]`` in caption order, ``caption[start:end]`` the word and
    ``kind`` one of :data:`WORD_KINDS` (``noun`` for NN/NNS/NNP/NNPS, ``adjective`` for JJ/JJR/JJS,
    ``pronoun`` for PRP/PRP$). Other words are not listed.
    """
    spans, cursor = [], 0
    for word, tag in _pattern_tagger().tag(caption):
        start = caption.find(word, cursor)
        if start < 0:  # the tagger normalised the token (e.g. quotes): skip it, keep the cursor
            continue
        cursor = start + len(word)
        kind = next((name for name, prefixes in WORD_KINDS.items() if tag.startswith(prefixes)), None)
        if kind is not None:
            spans.append((start, cursor, kind))
    return spans


def key_words_only(caption: str, spans: list[tuple[int, int, str]], kinds=("noun", "adjective", "pronoun")) -> str:
    """The caption reduced to its words of ``kinds`` (UIT's text augmentation), in order, space-joined.

    Returns the caption unchanged when it has no such word (an empty caption is never produced).
    """
    words = [caption[start:end] for start, end, kind in spans if kind in kinds]
    return " ".join(words) if words else caption
