"""Tests written to kill mutants of the methods' loss paths (modeling_uit.py, modeling_lgur.py, modeling_cada.py; `make mutation`)."""
import math
import re

import pytest
import torch

from tireid_hf.modeling.modeling_cada import pool_parts
from tireid_hf.modeling.modeling_uit import sincos_position_table
from tester import ModelTester

GRID = (4, 2)  # the tester's 64 x 32 image at patch 16


# ----------------------------------------------------------------------------- modeling_uit.py
def _uit_tester():
    return ModelTester("uit", tir_decoder_width=32, tir_decoder_heads=4, tir_decoder_layers=2)


def test_uit_sincos_frequencies_are_powers_of_10000_computed_in_double_precision():
    """Far positions magnify an error in the frequencies ``10000^(-k / (width / 4))``: a base of 10001, or
    frequencies computed in float32 (then multiplied by the float64 position), move sin/cos of column
    1999 by far more than the float32 rounding of the table. At width 12 the exponents are thirds."""
    table = sincos_position_table(12, (1, 2000))
    frequencies = [10000 ** (-k / 3) for k in range(3)]
    for column in (7, 1999):
        angles = [column * frequency for frequency in frequencies]
        expected = [0.0] * 3 + [1.0] * 3 + [math.sin(a) for a in angles] + [math.cos(a) for a in angles]
        torch.testing.assert_close(table[column], torch.tensor(expected), rtol=0, atol=1e-6)


def test_uit_restoration_decoder_follows_its_documented_formula():
    """The decoder's forward against its docstring, step by step: kept tokens embedded and scattered to
    their grid positions among mask tokens, the fixed sin-cos table ADDED, the text read through the
    bottleneck (padding ignored), the self-attention layers, the patch prediction."""
    from tireid_hf.modeling.modeling_uit import RestorationDecoder

    torch.manual_seed(0)
    decoder = RestorationDecoder(24, 16, 4, 2, 2.0, GRID, 16).eval()
    with torch.no_grad():
        decoder.mask_token.normal_()  # a trained mask token, so that where it lands matters
    keep = torch.tensor([[1, 6], [0, 3]])
    images, text = torch.randn(2, 3, 24), torch.randn(2, 5, 24)
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    with torch.no_grad():
        predicted = decoder(images, keep, text, padding)
        kept = decoder.image_embed(images)
        grid = decoder.mask_token.expand(2, 8, 16).clone()
        for n in range(2):
            for m, position in enumerate(keep[n].tolist()):
                grid[n, position] = kept[n, 1 + m]
        table = torch.cat([torch.zeros(1, 16), sincos_position_table(16, GRID)])
        hidden = torch.cat([kept[:, :1], grid], dim=1) + table
        hidden = decoder.text_attention(hidden, decoder.text_embed(text), memory_padding_mask=padding)
        for layer in decoder.layers:
            hidden = layer(hidden)
        expected = decoder.predict(decoder.norm(hidden[:, 1:]))
    assert predicted.shape == (2, 8, 16 * 16 * 3)
    torch.testing.assert_close(predicted, expected)


def test_uit_restoration_decoder_runs_under_bf16_autocast():
    """Mixed-precision training: under autocast the embedded tokens are bf16 while the mask token is a
    float32 parameter; it must take the tokens' dtype to be scattered among them. The result agrees with
    the float32 one to bf16 precision."""
    from tireid_hf.modeling.modeling_uit import RestorationDecoder

    torch.manual_seed(0)
    decoder = RestorationDecoder(24, 16, 4, 1, 2.0, GRID, 16).eval()
    keep = torch.tensor([[1, 6], [0, 3]])
    images, text = torch.randn(2, 3, 24), torch.randn(2, 5, 24)
    with torch.no_grad():
        reference = decoder(images, keep, text)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = decoder(images, keep, text)
    torch.testing.assert_close(mixed.float(), reference, rtol=0.05, atol=0.05)


def test_uit_inference_encoding_computes_no_token_features():
    """Inference costs the baseline's: the caption's token features are computed only when the
    restoration loss will read them (losses on and a restoration decoder)."""
    tester = _uit_tester()
    inputs = tester.inputs()
    args = (inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"])
    model = tester.model()
    assert model.encode_batch(*args, with_losses=False).text.token_features is None
    assert model.encode_batch(*args, with_losses=True).text.token_features is not None
    assert tester.model(use_tir=False).encode_batch(*args, with_losses=True).text.token_features is None


def test_uit_restoration_without_decoder_error_is_the_whole_message():
    tester = _uit_tester()
    inputs = tester.inputs()
    with pytest.raises(ValueError) as error:
        tester.model(use_tir=False).restore_image(inputs["pixel_values"], inputs["input_ids"])
    assert str(error.value) == (
        "this UIT model has no restoration decoder (inference_only, use_tir=False or tir_loss_weight=0)"
    )


def test_uit_losses_without_attention_mask_are_those_of_the_all_ones_mask():
    """No attention mask = every text token is real: the restoration decoder then reads every token."""
    tester = _uit_tester()
    model = tester.model().eval()
    inputs = tester.inputs()
    ones = dict(inputs, attention_mask=torch.ones_like(inputs["attention_mask"]))
    with torch.no_grad():
        without = model(**dict(inputs, attention_mask=None), generator=torch.Generator().manual_seed(5)).losses
        with_ones = model(**ones, generator=torch.Generator().manual_seed(5)).losses
    assert set(without) == {"sdm", "id", "triplet", "tir"}
    for name, value in with_ones.items():
        torch.testing.assert_close(without[name], value)


# ----------------------------------------------------------------------------- modeling_lgur.py
@pytest.mark.parametrize("name, other", [("id_guided", "id_dict"), ("id_dict", "id_guided")])
def test_lgur_id_loss_errors_name_their_term(name, other):
    tester = ModelTester("lgur", **{f"{other}_loss_weight": 0.0})
    model = tester.model(num_ids=0)
    with pytest.raises(ValueError, match="^" + re.escape(f"{name}: the ID loss is on ({name}_loss_weight=1.0) but")):
        model(**tester.inputs())


def test_lgur_losses_ignore_padded_text_positions():
    """Every term, the guided and plain text branches included, masks the caption's padding."""
    tester = ModelTester("lgur", sdm_loss_weight=1.0)
    model = tester.model().eval()  # evaluation mode: the ranking terms are deterministic
    inputs = tester.inputs()
    assert (inputs["attention_mask"] == 0).any()
    padded = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, 1000)
    with torch.no_grad():
        reference = model(**inputs).losses
        changed = model(**dict(inputs, input_ids=padded)).losses
    assert set(reference) == {"id_guided", "rank_guided", "id_dict", "rank_dict", "rank_text_dict", "rank_image_dict", "sdm"}
    for name, value in reference.items():
        torch.testing.assert_close(changed[name], value)


def test_lgur_guided_and_plain_text_branches_run_only_for_the_terms_that_need_them():
    """The prototype decoder runs once per branch: twice for the dictionary terms alone, four times with
    every term (the guided image and plain text branches added)."""
    inputs = ModelTester("lgur").inputs()
    dictionary_only = ModelTester("lgur", share_guidance_layer=False, id_guided_loss_weight=0.0, rank_guided_loss_weight=0.0,
                                  rank_image_dict_loss_weight=0.0, rank_text_dict_loss_weight=0.0).model()
    for model, terms, runs in ((dictionary_only, {"id_dict", "rank_dict"}, 2), (ModelTester("lgur").model(), None, 4)):
        calls = []
        model.unification.register_forward_hook(lambda module, args, output: calls.append(1))
        losses = model(**inputs).losses
        assert terms is None or set(losses) == terms
        assert len(calls) == runs


def test_lgur_text_without_attention_mask_is_the_all_ones_mask():
    tester = ModelTester("lgur")
    model = tester.model().eval()
    ids = tester.inputs()["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(model.get_text_features(ids), model.get_text_features(ids, torch.ones_like(ids)))


def test_lgur_ranking_terms_draw_in_training_and_take_the_expectation_in_evaluation():
    """The model's RANK over [N, P, D] parts is the semi-hard ranking loss of the flattened parts at the
    configured margin: one random draw in training mode, the expectation in evaluation mode
    (tests/test_lgur.py's hand-computed case, its 4-d embeddings split into 2 parts of 2)."""
    from test_lgur import FIXED, ROW0_CHOICES, ranking_case

    anchors, paired, pids = ranking_case()
    model = ModelTester("lgur").model()
    assert model.config.ranking_margin == 0.3
    first, second = anchors.view(4, 2, 2), paired.view(4, 2, 2)
    model.eval()
    assert model.ranking_loss(first, second, pids).item() == pytest.approx(FIXED + sum(ROW0_CHOICES) / 2, abs=1e-5)
    model.train()
    drawn = set()
    for seed in range(12):
        torch.manual_seed(seed)
        value = model.ranking_loss(first, second, pids).item()
        drawn |= {index for index, choice in enumerate(ROW0_CHOICES) if value == pytest.approx(FIXED + choice, abs=1e-5)}
    assert drawn == {0, 1}


# ----------------------------------------------------------------------------- modeling_cada.py
ARA_MISSING = ("ara: the masked attribute loss is on (ara_loss_weight=0.1) but forward got no "
               "masked_input_ids/masked_labels [batch, length]; the training collator builds them with "
               "tireid_hf.processing.mask_attribute_tokens (or set ara_loss_weight=0)")


@pytest.mark.parametrize("missing", ["masked_input_ids", "masked_labels"])
def test_cada_ara_without_either_masked_input_is_refused_with_the_whole_message(missing):
    tester = ModelTester("cada")
    inputs = tester.inputs()
    inputs.pop(missing)
    with pytest.raises(ValueError) as error:
        tester.model()(**inputs)
    assert str(error.value) == ARA_MISSING


def test_cada_masked_input_ids_of_another_shape_are_refused_by_name():
    tester = ModelTester("cada")
    inputs = tester.inputs()
    inputs["masked_input_ids"] = inputs["masked_input_ids"][:, :3]
    with pytest.raises(ValueError, match=re.escape("masked_input_ids must have the shape of input_ids [4, 12], got [4, 3]")):
        tester.model()(**inputs)


def test_cada_masked_labels_take_every_vocabulary_id_and_refuse_the_others():
    tester = ModelTester("cada")
    model = tester.model()
    inputs = tester.inputs()
    vocab_size = model.config.clip_config.text_config.vocab_size
    for label in (0, vocab_size - 1):
        labels = inputs["masked_labels"].clone()
        labels[0, 1] = label
        assert torch.isfinite(model(**dict(inputs, masked_labels=labels)).losses["ara"])
    for label in (-5, vocab_size):
        labels = inputs["masked_labels"].clone()
        labels[0, 1] = label
        with pytest.raises(ValueError, match=re.escape(f"masked_labels must be token ids in [0, {vocab_size}) or -100, got")):
            model(**dict(inputs, masked_labels=labels))


def test_cada_decode_without_decoder_error_is_the_whole_message():
    model = ModelTester("cada", itm_local_loss_weight=0.0, itm_global_loss_weight=0.0, ara_loss_weight=0.0).model()
    with pytest.raises(ValueError) as error:
        model.decode(torch.zeros(1, 3, 24), torch.ones(1, 3, dtype=torch.long), torch.zeros(1, 2, 24))
    assert str(error.value) == "this CADA model has no decoder: every loss that needs it has weight 0"


def test_cada_decoder_ignores_padded_text_positions():
    model = ModelTester("cada").model().eval()
    torch.manual_seed(0)
    text, images = torch.randn(2, 6, 24), torch.randn(2, 3, 24)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    changed = text.clone()
    changed[0, 4:] = torch.randn(2, 24)
    with torch.no_grad():
        reference, after = model.decode(text, mask, images), model.decode(changed, mask, images)
        real_changed = text.clone()
        real_changed[0, 2] = torch.randn(24)
        moved = model.decode(real_changed, mask, images)
    torch.testing.assert_close(after[0, :4], reference[0, :4])
    torch.testing.assert_close(after[1], reference[1])
    assert not torch.allclose(moved[0, :4], reference[0, :4])


def test_cada_pool_parts_of_a_caption_without_words_has_no_valid_part():
    """<start> <end> and padding: no word, so no part (the end-of-text token is not a word)."""
    tokens = torch.arange(1.0, 7.0).view(1, 6, 1)
    parts, valid = pool_parts(tokens, torch.tensor([[1, 1, 0, 0, 0, 0]]), num_parts=2)
    assert valid.tolist() == [[False, False]]
    assert parts.abs().sum().item() == 0.0


def test_cada_losses_without_attention_mask_are_those_of_the_all_ones_mask():
    tester = ModelTester("cada")
    model = tester.model().eval()
    inputs = tester.inputs()
    with torch.no_grad():
        without = model(**dict(inputs, attention_mask=None)).losses
        with_ones = model(**dict(inputs, attention_mask=torch.ones_like(inputs["attention_mask"]))).losses
    assert set(without) == {"global", "itm", "itm_global", "itm_local", "ara"}
    for name, value in with_ones.items():
        torch.testing.assert_close(without[name], value)


def test_cada_losses_ignore_padded_text_positions():
    """Every term masks the caption's padding: the decoder's queries, the parts, the masked captions."""
    tester = ModelTester("cada")
    model = tester.model().eval()
    inputs = tester.inputs()
    padding = inputs["attention_mask"] == 0
    assert padding.any()
    changed = dict(inputs, input_ids=inputs["input_ids"].masked_fill(padding, 1000),
                   masked_input_ids=inputs["masked_input_ids"].masked_fill(padding, 1000))
    with torch.no_grad():
        reference, after = model(**inputs).losses, model(**changed).losses
    for name, value in reference.items():
        torch.testing.assert_close(after[name], value)


def test_cada_inference_encoding_computes_no_token_features():
    """Inference is CLIP's global embedding: token features only when a loss needs the decoder."""
    tester = ModelTester("cada")
    inputs = tester.inputs()
    args = (inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"])
    features = tester.model().encode_batch(*args, with_losses=False)
    assert features.image.token_features is None and features.text.token_features is None
    assert tester.model().encode_batch(*args, with_losses=True).text.token_features is not None
    no_decoder = ModelTester("cada", itm_local_loss_weight=0.0, itm_global_loss_weight=0.0, ara_loss_weight=0.0).model()
    features = no_decoder.encode_batch(*args, with_losses=True)
    assert features.image.token_features is None and features.text.token_features is None


def test_uit_sincos_table_of_a_width_not_divisible_by_4_is_refused_by_name():
    with pytest.raises(ValueError) as error:
        sincos_position_table(6, (1, 2))
    assert str(error.value) == "a 2-D sin-cos table needs a width divisible by 4, got 6"


def test_cada_pool_parts_counts_each_captions_own_words_in_a_batch():
    """Row 0 has no word (<start> <end>, then padding), row 1 four words: row 0's end-of-text token must not
    become a word because row 1 is longer (the word count is per row, not over the batch)."""
    tokens = torch.arange(1.0, 13.0).view(2, 6, 1)
    mask = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    parts, valid = pool_parts(tokens, mask, num_parts=2)
    assert valid.tolist() == [[False, False], [True, True]]
    assert parts[0].abs().sum().item() == 0.0
    assert parts[1].view(-1).tolist() == [(8.0 + 9.0) / 2, (10.0 + 11.0) / 2]  # words 1-2 and 3-4 of row 1


def test_cada_ara_reads_the_masked_caption():
    """ARA predicts the masked words from the image AND the rest of the masked caption: changing one
    unmasked word of ``masked_input_ids`` changes ``ara`` and nothing else."""
    tester = ModelTester("cada")
    model = tester.model().eval()
    inputs = tester.inputs()
    real_unmasked = (inputs["attention_mask"] == 1) & (inputs["masked_labels"] == -100)
    real_unmasked[:, 0] = False  # not the start token
    row, column = real_unmasked.nonzero()[0].tolist()
    changed = inputs["masked_input_ids"].clone()
    changed[row, column] = (changed[row, column] + 7) % model.config.clip_config.text_config.vocab_size
    with torch.no_grad():
        reference = model(**inputs).losses
        after = model(**dict(inputs, masked_input_ids=changed)).losses
    assert abs(after["ara"].item() - reference["ara"].item()) > 1e-4
    for name in ("global", "itm_global", "itm_local"):
        torch.testing.assert_close(after[name], reference[name])
