"""Tiny random CLIP configs and inputs for model tests, like transformers' model testers.

Every registered method gets the same shared checks (tests/test_modeling_common.py); a method's
own tests add what only it has. Image 64x32 at patch 16 (a 4x2 grid), width 32, 2 layers.
"""

from __future__ import annotations

import torch
from transformers import CLIPConfig

from tireid_hf.modeling import METHODS
from tireid_hf.processing import CLIP_MASK_TOKEN_ID, IGNORE_INDEX, build_text_transforms

IMAGE_SIZE = (64, 32)
VOCAB_SIZE = 49408  # the real CLIP vocabulary: tests tokenise with the real tokenizer
END_OF_TEXT = 49407
START_OF_TEXT = 49406


def tiny_clip_config(projection_dim: int = 24, square_image_size: int = 32) -> CLIPConfig:
    common = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    return CLIPConfig(
        text_config=dict(common, vocab_size=VOCAB_SIZE, max_position_embeddings=77),
        vision_config=dict(common, patch_size=16, image_size=square_image_size),
        projection_dim=projection_dim,
    )


class ModelTester:
    """Builds a tiny model of one method and a batch for it."""

    def __init__(self, method: str, batch_size: int = 4, text_length: int = 12, num_ids: int = 3, **overrides):
        self.method = method
        self.config_class, self.model_class = METHODS[method]
        self.batch_size = batch_size
        self.text_length = text_length
        self.num_ids = num_ids
        self.overrides = overrides

    def config(self, **overrides):
        fields = dict(clip_config=tiny_clip_config(), image_size=IMAGE_SIZE, num_ids=self.num_ids)
        fields.update(self.overrides)
        fields.update(overrides)
        return self.config_class(**fields)

    def model(self, seed: int = 0, **overrides):
        torch.manual_seed(seed)
        return self.model_class(self.config(**overrides))

    def inputs(self, seed: int = 0) -> dict[str, torch.Tensor]:
        """pixel_values [B, 3, 64, 32], input_ids/attention_mask [B, L] with start/end tokens and
        padding, pids [B] with two images of identity 0 (so every batch has a positive pair)."""
        generator = torch.Generator().manual_seed(seed)
        batch, length = self.batch_size, self.text_length
        input_ids = torch.full((batch, length), END_OF_TEXT)
        attention_mask = torch.zeros((batch, length), dtype=torch.long)
        for row in range(batch):
            words = int(torch.randint(2, length - 1, (), generator=generator))
            input_ids[row, 0] = START_OF_TEXT
            input_ids[row, 1 : words + 1] = torch.randint(300, 40000, (words,), generator=generator)
            attention_mask[row, : words + 2] = 1
        pids = torch.tensor([0, 0] + [index % self.num_ids for index in range(1, batch - 1)])
        inputs = {
            "pixel_values": torch.randn(batch, 3, *IMAGE_SIZE, generator=generator),
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "pids": pids,
        }
        for transform in build_text_transforms(self.model_class.text_transforms):
            if not transform.batch_input_names:
                continue
            if transform.name not in EXAMPLE_BATCH_INPUTS:
                raise KeyError(f"tests/tester.py has no example of the batch inputs {transform.batch_input_names} of "
                               f"text transform {transform.name!r}: add one to EXAMPLE_BATCH_INPUTS")
            inputs.update(EXAMPLE_BATCH_INPUTS[transform.name](input_ids))
        return inputs


def masked_text_inputs(input_ids: torch.Tensor, positions=(1,)) -> dict[str, torch.Tensor]:
    """The collator's attribute-masking output for a batch (CADA's ARA): the tokens at ``positions``
    replaced by the mask token in ``masked_input_ids``; ``masked_labels`` holds the original ids there
    and -100 elsewhere."""
    masked_input_ids, masked_labels = input_ids.clone(), torch.full_like(input_ids, IGNORE_INDEX)
    masked_input_ids[:, list(positions)] = CLIP_MASK_TOKEN_ID
    masked_labels[:, list(positions)] = input_ids[:, list(positions)]
    return {"masked_input_ids": masked_input_ids, "masked_labels": masked_labels}


# What each text transform that adds batch inputs gives a tokenised batch, for the model tests.
EXAMPLE_BATCH_INPUTS = {"attribute_masking": masked_text_inputs}
