"""Tiny random CLIP configs and inputs for model tests, like transformers' model testers.

Every registered method gets the same shared checks (tests/test_modeling_common.py); a method's
own tests add what only it has. Image 64x32 at patch 16 (a 4x2 grid), width 32, 2 layers; the real
CLIP vocabulary unless ``vocab_size`` asks for a small one (its last two ids start and end a text).
"""

from __future__ import annotations

import torch
from transformers import CLIPConfig

from tireid_hf.modeling import METHODS
from tireid_hf.processing import CLIP_MASK_TOKEN_ID, IGNORE_INDEX, build_text_transforms

IMAGE_SIZE = (64, 32)
VOCAB_SIZE = 49408  # the real CLIP vocabulary: tests tokenise with the real tokenizer


def tiny_clip_config(projection_dim: int = 24, square_image_size: int = 32, vocab_size: int = VOCAB_SIZE) -> CLIPConfig:
    common = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    special = dict(bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1)  # CLIP's 49406 / 49407
    return CLIPConfig(
        text_config=dict(common, **special, vocab_size=vocab_size, max_position_embeddings=77),
        vision_config=dict(common, patch_size=16, image_size=square_image_size),
        projection_dim=projection_dim,
    )


class ModelTester:
    """Builds a tiny model of one method and a batch for it.

    ``word_ids``: the [low, high) range of the caption words drawn by :meth:`inputs` (inside the vocabulary,
    below its special ids).
    """

    def __init__(self, method: str, batch_size: int = 4, text_length: int = 12, num_ids: int = 3,
                 vocab_size: int = VOCAB_SIZE, word_ids: tuple[int, int] = (300, 40000), **overrides):
        self.method = method
        self.config_class, self.model_class = METHODS[method]
        self.batch_size = batch_size
        self.text_length = text_length
        self.num_ids = num_ids
        self.vocab_size = vocab_size
        self.word_ids = word_ids
        self.overrides = overrides

    def config(self, **overrides):
        fields = dict(clip_config=tiny_clip_config(vocab_size=self.vocab_size), image_size=IMAGE_SIZE, num_ids=self.num_ids)
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
        config = self.config()
        text_config = config.clip_config.text_config
        input_ids = torch.full((batch, length), text_config.eos_token_id)
        attention_mask = torch.zeros((batch, length), dtype=torch.long)
        for row in range(batch):
            words = int(torch.randint(2, length - 1, (), generator=generator))
            input_ids[row, 0] = text_config.bos_token_id
            input_ids[row, 1 : words + 1] = torch.randint(*self.word_ids, (words,), generator=generator)
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
            inputs.update(EXAMPLE_BATCH_INPUTS[transform.name](input_ids, config))
        return inputs


def masked_text_inputs(input_ids: torch.Tensor, positions=(1,), mask_token_id: int = CLIP_MASK_TOKEN_ID) -> dict[str, torch.Tensor]:
    """The collator's attribute-masking output for a batch (CADA's ARA): the tokens at ``positions``
    replaced by ``mask_token_id`` in ``masked_input_ids``; ``masked_labels`` holds the original ids there
    and -100 elsewhere."""
    masked_input_ids, masked_labels = input_ids.clone(), torch.full_like(input_ids, IGNORE_INDEX)
    masked_input_ids[:, list(positions)] = mask_token_id
    masked_labels[:, list(positions)] = input_ids[:, list(positions)]
    return {"masked_input_ids": masked_input_ids, "masked_labels": masked_labels}


# What each text transform that adds batch inputs gives a tokenised batch (and the model's config), for the model tests.
EXAMPLE_BATCH_INPUTS = {
    "attribute_masking": lambda input_ids, config: masked_text_inputs(input_ids, mask_token_id=config.mask_token_id),
}
