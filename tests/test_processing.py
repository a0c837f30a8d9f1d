"""The processor: CLIP's real tokenizer built offline, 384x128-style preprocessing, save/load."""

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from tireid_hf.processing import TIReIDProcessor, TrainingImageAugmentation, clip_tokenizer
from tester import IMAGE_SIZE, ModelTester


@pytest.fixture(scope="module")
def processor():
    return TIReIDProcessor.for_image_size(IMAGE_SIZE)


def test_tokenizer_reproduces_openai_clip_ids():
    # the ids OpenAI CLIP's SimpleTokenizer gives (also in the transformers CLIP docs)
    tokenizer = clip_tokenizer()
    assert len(tokenizer) == 49408
    assert tokenizer("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tokenizer("A PHOTO   of a Cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_text_is_padded_and_truncated_to_77_tokens_keeping_end_of_text(processor):
    long_caption = "a woman in a red coat " * 40
    encoding = processor(text=["a man", long_caption])
    assert encoding["input_ids"].shape == (2, 77)
    assert encoding["input_ids"][1, -1].item() == 49407
    assert encoding["attention_mask"][0].sum().item() == 4  # <start> a man <end>
    assert encoding["attention_mask"][1].all()


def test_empty_caption_is_refused(processor):
    with pytest.raises(ValueError, match=r"positions \[1\]"):
        processor(text=["a man", "   "])


def test_images_are_resized_without_crop_and_normalised_with_clip_statistics(processor):
    red = Image.new("RGB", (40, 100), (255, 0, 0))
    pixels = processor(images=[red, red])["pixel_values"]
    assert pixels.shape == (2, 3, *IMAGE_SIZE)
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    expected = torch.tensor([(1 - mean[0]) / std[0], (0 - mean[1]) / std[1], (0 - mean[2]) / std[2]])
    torch.testing.assert_close(pixels[0, :, 10, 10], expected, atol=1e-4, rtol=0)


def test_processor_round_trip_through_auto_processor(processor, tmp_path):
    ModelTester("clip_reid").model().save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, TIReIDProcessor)
    assert loaded.image_size == IMAGE_SIZE
    image = Image.new("RGB", (30, 70), (10, 200, 30))
    texts = ["a woman with a black backpack", "a man in blue jeans"]
    for key, value in processor(text=texts, images=[image]).items():
        torch.testing.assert_close(loaded(text=texts, images=[image])[key], value)


def test_augmentation_keeps_shape_and_flips_pad_crops_and_erases():
    pixels = torch.arange(3 * 8 * 4, dtype=torch.float32).reshape(3, 8, 4) + 1
    flip_only = TrainingImageAugmentation(padding=0, flip_probability=1.0, erase_probability=0.0)
    torch.testing.assert_close(flip_only(pixels), pixels.flip(-1))
    crop_only = TrainingImageAugmentation(padding=2, flip_probability=0.0, erase_probability=0.0)
    seen_shift = False
    for seed in range(20):
        out = crop_only(pixels, generator=torch.Generator().manual_seed(seed))
        assert out.shape == pixels.shape
        seen_shift |= not torch.equal(out, pixels)
    assert seen_shift
    erase_only = TrainingImageAugmentation(padding=0, flip_probability=0.0, erase_probability=1.0, erase_area=(0.2, 0.3))
    erased = erase_only(pixels, generator=torch.Generator().manual_seed(0))
    zero_fraction = (erased == 0).float().mean().item()
    assert 0.1 <= zero_fraction <= 0.45  # one box of ~20-30% of the area (rounded to whole pixels)
    assert torch.equal(pixels, torch.arange(3 * 8 * 4, dtype=torch.float32).reshape(3, 8, 4) + 1)  # input untouched


def test_part_of_speech_spans_of_a_pedestrian_caption():
    from tireid_hf.processing import key_words_only, tag_word_spans

    caption = "A woman with long black hair is wearing a red striped shirt. She carries a black backpack."
    spans = tag_word_spans(caption)
    words = {(caption[start:end], kind) for start, end, kind in spans}
    assert {("woman", "noun"), ("hair", "noun"), ("shirt", "noun"), ("backpack", "noun")} <= words
    assert {("long", "adjective"), ("black", "adjective"), ("red", "adjective"), ("striped", "adjective")} <= words
    assert ("She", "pronoun") in words
    assert not any(caption[start:end] in {"is", "wearing", "with", "a", "carries"} for start, end, _ in spans)
    assert key_words_only(caption, spans) == "woman long black hair red striped shirt She black backpack"
    assert key_words_only("is with", tag_word_spans("is with")) == "is with"


def test_spans_map_onto_bpe_token_positions():
    from tireid_hf.processing import tag_word_spans, token_positions_of_spans

    caption = "a man in a red-striped sweatshirt"
    encoding = clip_tokenizer()(caption, return_offsets_mapping=True)
    groups = token_positions_of_spans(encoding["offset_mapping"], tag_word_spans(caption), kinds=("noun",))
    tokens = [[encoding["input_ids"][index] for index in group] for group in groups]
    decoded = [clip_tokenizer().decode(ids).replace(" ", "") for ids in tokens]
    assert "man" in decoded and "sweatshirt" in decoded
