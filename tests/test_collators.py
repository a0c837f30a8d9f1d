"""The training collator's text transforms, as properties over the probabilities and seeds hypothesis
draws: attribute masking (CADA) masks each noun/adjective whole at the configured rate and nothing
else; key-word augmentation (UIT) reduces each caption at the configured rate. And a batch is a pure
function of its seed."""

import math
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tireid_hf.data.collators import PIXEL_CACHE_MIB, TrainingCollator, add_word_spans, caption_pairs
from tireid_hf.processing import (ATTRIBUTE_KINDS, CLIP_MASK_TOKEN_ID, IGNORE_INDEX, TEXT_TRANSFORMS, TextTransform,
                                  TIReIDProcessor, TrainingImageAugmentation, key_words_only, token_positions_of_spans)

REPEATS = 4  # every caption of the split this many times per batch: 80 captions, ~700 attribute words

SEEDS = st.integers(0, 2**62)
# A collated batch decodes and processes its 80 images (~0.2 s): a quarter of the profile's examples.
FEWER_EXAMPLES = settings(max_examples=max(10, settings().max_examples // 4))
PROBABILITIES = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0))


def within_binomial_bounds(count: int, trials: int, probability: float) -> bool:
    """``count`` is within 5 standard deviations (+1 for rounding) of Binomial(trials, probability)'s mean."""
    return abs(count - trials * probability) <= 5 * math.sqrt(trials * probability * (1 - probability)) + 1


@pytest.fixture(scope="module")
def tagged_split(small_test_split):
    return add_word_spans(small_test_split)


def collate(split, processor, seed, text_transforms, **config):
    model_config = SimpleNamespace(attribute_mask_probability=0.0, attribute_mask_unit="word",
                                   mask_token_id=CLIP_MASK_TOKEN_ID, key_word_augmentation_probability=0.0)
    for key, value in config.items():
        setattr(model_config, key, value)
    pairs, _ = caption_pairs(split)
    samples = pairs * REPEATS
    batch = TrainingCollator(split, processor, model_config, text_transforms)(samples, seed)
    all_captions, all_spans = split["captions"], split["caption_word_spans"]  # columns: no image decoding
    captions = [all_captions[row][index] for row, index in samples]
    spans = [[tuple(span) for span in all_spans[row][index]] for row, index in samples]
    return batch, captions, spans


@FEWER_EXAMPLES
@given(probability=PROBABILITIES, seed=SEEDS)
def test_property_attribute_masking_masks_whole_attribute_words_at_the_configured_rate(
        tagged_split, tiny_processor, probability, seed):
    batch, captions, spans = collate(tagged_split, tiny_processor, seed, ("attribute_masking",),
                                     attribute_mask_probability=probability)
    input_ids, masked, labels = batch["input_ids"], batch["masked_input_ids"], batch["masked_labels"]
    is_masked = masked == CLIP_MASK_TOKEN_ID
    # labels: the original id where masked, ignored elsewhere; the other tokens are the caption's own
    torch.testing.assert_close(labels, torch.where(is_masked, input_ids, torch.full_like(input_ids, IGNORE_INDEX)))
    torch.testing.assert_close(masked[~is_masked], input_ids[~is_masked])
    words = masked_words = 0
    all_offsets = tiny_processor.tokenizer(captions, padding="max_length", truncation=True, max_length=input_ids.shape[1],
                                           return_offsets_mapping=True)["offset_mapping"]
    for row, (caption, offsets) in enumerate(zip(captions, all_offsets)):
        groups = token_positions_of_spans(offsets, spans[row], ATTRIBUTE_KINDS)
        attribute_positions = {position for group in groups for position in group}
        assert set(is_masked[row].nonzero().flatten().tolist()) <= attribute_positions  # only attribute words
        for group in groups:
            flags = is_masked[row, group]
            assert flags.all() or not flags.any(), (caption, group)  # a word is never half-masked
            masked_words += int(flags.all())
        words += len(groups)
    assert words > 500
    assert within_binomial_bounds(masked_words, words, probability), (masked_words, words, probability)


@FEWER_EXAMPLES
@given(probability=PROBABILITIES, seed=SEEDS)
def test_property_key_word_augmentation_reduces_captions_at_the_configured_rate(
        tagged_split, tiny_processor, probability, seed):
    batch, captions, spans = collate(tagged_split, tiny_processor, seed, ("key_word_augmentation",),
                                     key_word_augmentation_probability=probability)
    length = batch["input_ids"].shape[1]

    def tokens(texts):
        return tiny_processor.tokenizer(texts, padding="max_length", truncation=True, max_length=length,
                                        return_tensors="pt")["input_ids"]

    full, reduced = tokens(captions), tokens([key_words_only(caption, span) for caption, span in zip(captions, spans)])
    is_full = (batch["input_ids"] == full).all(dim=1)
    is_reduced = (batch["input_ids"] == reduced).all(dim=1)
    assert not (full == reduced).all(dim=1).any()  # every caption of the split has words to drop
    assert (is_full ^ is_reduced).all()  # each caption is one or the other
    assert within_binomial_bounds(int(is_reduced.sum()), len(captions), probability), (int(is_reduced.sum()), probability)


def test_a_batch_is_a_function_of_its_seed(tagged_split, tiny_processor):
    first, _, _ = collate(tagged_split, tiny_processor, 11, ("attribute_masking",), attribute_mask_probability=0.5)
    second, _, _ = collate(tagged_split, tiny_processor, 11, ("attribute_masking",), attribute_mask_probability=0.5)
    other, _, _ = collate(tagged_split, tiny_processor, 12, ("attribute_masking",), attribute_mask_probability=0.5)
    for key in first:
        torch.testing.assert_close(second[key], first[key], rtol=0, atol=0)
    assert not torch.equal(other["masked_input_ids"], first["masked_input_ids"])


class CaptionLengths(TextTransform):
    """A text transform that is not in the package: each caption's length in characters."""

    name = "caption_lengths"
    batch_input_names = ("caption_lengths",)

    def batch_inputs(self, captions, spans, length, tokenizer, config, generator):
        return {"caption_lengths": torch.tensor([len(caption) for caption in captions])}


def test_a_text_transform_added_to_the_registry_reaches_the_batch_without_collator_changes(
        tagged_split, tiny_processor, monkeypatch):
    monkeypatch.setitem(TEXT_TRANSFORMS, "caption_lengths", CaptionLengths())
    batch, captions, _ = collate(tagged_split, tiny_processor, 0, ("caption_lengths",))
    assert batch["caption_lengths"].tolist() == [len(caption) for caption in captions]


def test_the_model_tests_name_a_text_transform_whose_batch_inputs_they_cannot_build(monkeypatch):
    from tester import ModelTester
    from tireid_hf.modeling import CADAModel

    monkeypatch.setitem(TEXT_TRANSFORMS, "caption_lengths", CaptionLengths())
    monkeypatch.setattr(CADAModel, "text_transforms", ("attribute_masking", "caption_lengths"))
    with pytest.raises(KeyError, match="'caption_lengths'.*EXAMPLE_BATCH_INPUTS"):
        ModelTester("cada").inputs()


def test_cached_pixels_give_the_batches_of_fresh_processing_and_augmentation_never_touches_the_cache(
        tagged_split, tiny_processor):
    """Each image row is processed once into the cache; batches equal those of a collator with no cache
    (every image decoded and processed on each use), before and after the cache fills, and augmenting
    a cached image leaves the cached tensor as processed."""
    model_config = SimpleNamespace(attribute_mask_probability=0.3, attribute_mask_unit="word",
                                   mask_token_id=CLIP_MASK_TOKEN_ID)
    pairs, _ = caption_pairs(tagged_split)
    samples = pairs * 2
    cached, uncached = (TrainingCollator(tagged_split, tiny_processor, model_config, ("attribute_masking",),
                                         TrainingImageAugmentation(), pixel_cache_mib=mib) for mib in (PIXEL_CACHE_MIB, 0))
    for seed in (3, 4):  # the first call fills the cache, the second reads it
        expected, got = uncached(samples, seed), cached(samples, seed)
        assert set(got) == set(expected)
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)
    assert sorted(cached.pixel_cache) == sorted({row for row, _ in pairs}) and not uncached.pixel_cache
    fresh = tiny_processor(images=[tagged_split[row]["image"] for row in sorted(cached.pixel_cache)])["pixel_values"]
    torch.testing.assert_close(torch.stack([cached.pixel_cache[row] for row in sorted(cached.pixel_cache)]), fresh,
                               rtol=0, atol=0)


def test_a_split_is_cached_whole_when_its_pixels_fit_and_not_at_all_otherwise():
    """6 images of 3 x 64 x 32 float32: a cache of exactly 6 images' bytes holds every row after one
    pass; one of 5.9 images' bytes holds none. Both give the freshly processed pixels."""
    from tireid_hf.data import load_tireid_dataset

    split = load_tireid_dataset("synthetic", num_train_ids=2, num_validation_ids=1, num_test_ids=1, images_per_id=3)["train"]
    processor = TIReIDProcessor.for_image_size((64, 32))
    image_mib = 3 * 64 * 32 * 4 / 2**20
    rows = list(range(len(split)))
    fresh = processor(images=[split[row]["image"] for row in rows])["pixel_values"]
    fitting, too_small = (TrainingCollator(split, processor, None, pixel_cache_mib=images * image_mib) for images in (6, 5.9))
    for collator in (fitting, too_small):
        for _ in range(2):  # the second pass reads the cache where there is one
            torch.testing.assert_close(torch.stack(collator.processed_images(rows[::-1])), fresh.flip(0), rtol=0, atol=0)
    assert sorted(fitting.pixel_cache) == rows and too_small.pixel_cache is None
