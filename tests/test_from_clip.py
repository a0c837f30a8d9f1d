"""Building a method model around a CLIP checkpoint: weights copied, position table resized once."""


import pytest
import torch
from transformers import CLIPModel

from tireid_hf.modeling import METHODS
from tireid_hf.modeling.base import resize_position_table
from tester import IMAGE_SIZE, ModelTester, tiny_clip_config


def test_resize_position_table_is_bilinear_with_half_pixel_centres():
    # one channel, 2x2 grid [[0, 1], [2, 3]] -> 4 rows x 2 columns. Source rows sampled at
    # (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped to [0, 1]; columns unchanged.
    table = torch.tensor([[9.0], [0.0], [1.0], [2.0], [3.0]])  # class token first
    resized = resize_position_table(table, (4, 2))
    expected = torch.tensor([[9.0], [0.0], [1.0], [0.5], [1.5], [1.5], [2.5], [2.0], [3.0]])
    torch.testing.assert_close(resized, expected)


def test_resize_refuses_a_non_square_source():
    with pytest.raises(ValueError, match="square"):
        resize_position_table(torch.zeros(1 + 6, 4), (4, 2))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_from_clip_copies_weights_and_resizes_the_position_table_once(method, tmp_path):
    torch.manual_seed(0)
    clip = CLIPModel(tiny_clip_config(square_image_size=32)).eval()  # 2x2 grid
    clip.save_pretrained(tmp_path)
    model = METHODS[method][1].from_clip(str(tmp_path), image_size=IMAGE_SIZE, num_ids=3).eval()
    table = model.clip.vision_model.embeddings.position_embedding.weight
    assert table.shape == (1 + 4 * 2, 32)
    original = clip.vision_model.embeddings.position_embedding.weight
    torch.testing.assert_close(table, resize_position_table(original, (4, 2)))
    torch.testing.assert_close(
        model.clip.text_model.embeddings.token_embedding.weight, clip.text_model.embeddings.token_embedding.weight
    )
    inputs = ModelTester(method).inputs()
    with torch.no_grad():
        ours = model.encode_text(inputs["input_ids"], inputs["attention_mask"]).global_features
        reference = clip.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).pooler_output
        torch.testing.assert_close(ours, reference)
        # the image path equals CLIP run on the same rectangular table: no per-forward interpolation
        pixels = inputs["pixel_values"]
        clip.vision_model.embeddings = model.clip.vision_model.embeddings
        reference_image = clip.get_image_features(pixel_values=pixels).pooler_output
        torch.testing.assert_close(model.encode_image(pixels).global_features, reference_image)
