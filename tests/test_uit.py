"""UIT: grey image, patch mask, restoration decoder and its loss, triplet term, switches, inference
path, visualisation and a short training run that must learn."""

import math

import pytest
import torch
from PIL import Image

from tireid_hf.modeling import UITConfig, UITModel, losses
from tireid_hf.modeling.configuration_uit import CLIP_IMAGE_MEAN, CLIP_IMAGE_STD
from tireid_hf.modeling.modeling_uit import patchify, sincos_position_table, unpatchify
from tireid_hf.processing import TIReIDProcessor
from tireid_hf.visualize import MARGIN, restoration_figure
from tester import IMAGE_SIZE, ModelTester, tiny_clip_config

GRID = (4, 2)  # IMAGE_SIZE at patch 16


@pytest.fixture
def tester():
    return ModelTester("uit", tir_decoder_width=32, tir_decoder_heads=4, tir_decoder_layers=2)


# ----------------------------------------------------------------------------- pure pieces
def test_masked_patch_mse_matches_hand_computation_and_ignores_kept_patches():
    predicted = torch.tensor([[[1.0, 2.0], [5.0, 5.0]], [[0.0, 0.0], [3.0, -1.0]]])
    target = torch.tensor([[[0.0, 0.0], [5.0, 5.0]], [[1.0, 1.0], [0.0, 0.0]]])
    masked = torch.tensor([[True, False], [True, True]])
    # masked patches: (1 + 4) / 2 = 2.5, (1 + 1) / 2 = 1, (9 + 1) / 2 = 5 -> mean over 3 patches
    assert losses.masked_patch_mse(predicted, target, masked).item() == pytest.approx((2.5 + 1 + 5) / 3)
    changed = predicted.clone()
    changed[0, 1] = 100.0  # a kept patch
    assert losses.masked_patch_mse(changed, target, masked).item() == pytest.approx((2.5 + 1 + 5) / 3)
    with pytest.raises(ValueError, match="masked"):
        losses.masked_patch_mse(predicted, target, masked[:, :1])


def test_sincos_table_matches_hand_computation():
    table = sincos_position_table(4, (2, 3))  # one frequency (1.0) per axis: [sin r, cos r, sin c, cos c]
    assert table.shape == (6, 4)
    torch.testing.assert_close(table[0], torch.tensor([0.0, 1.0, 0.0, 1.0]))
    torch.testing.assert_close(table[2], torch.tensor([0.0, 1.0, math.sin(2), math.cos(2)]))  # row 0, column 2
    torch.testing.assert_close(table[4], torch.tensor([math.sin(1), math.cos(1), math.sin(1), math.cos(1)]))
    wide = sincos_position_table(8, (2, 3))  # frequencies 1 and 10000^(-1/2) = 0.01
    expected = [math.sin(1), math.sin(0.01), math.cos(1), math.cos(0.01), math.sin(2), math.sin(0.02), math.cos(2), math.cos(0.02)]
    torch.testing.assert_close(wide[5], torch.tensor(expected))  # row 1, column 2


def test_patchify_order_and_round_trip():
    pixels = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)  # patch 2: a 2x3 grid
    patches = patchify(pixels, 2)
    assert patches.shape == (2, 6, 12)
    # patch 1 = rows 0-1, columns 2-3; values ordered (y, x, channel)
    expected = [pixels[0, c, y, 2 + x].item() for y in range(2) for x in range(2) for c in range(3)]
    assert patches[0, 1].tolist() == expected
    torch.testing.assert_close(unpatchify(patches, 2, (2, 3)), pixels)


def test_grey_pixels_weight_the_normalised_channels_as_sen(tester):
    model = tester.model()
    pixels = torch.tensor([1.0, -2.0, 0.5]).view(1, 3, 1, 1).expand(1, 3, *IMAGE_SIZE)
    grey = model.grey_pixels(pixels)
    # 0.2989 * 1 + 0.587 * (-2) + 0.114 * 0.5 = -0.8181, the same in every channel
    torch.testing.assert_close(grey[0, :, 0, 0], torch.tensor([-0.8181] * 3))
    assert grey.shape == pixels.shape


def test_pixel_grey_input_undoes_the_normalisation_and_uses_weighted_rgb(tester):
    model = tester.model(tir_grey_input="pixel")
    rgb = torch.tensor([1.0, 0.0, 0.0])  # pure red
    mean, std = torch.tensor(CLIP_IMAGE_MEAN), torch.tensor(CLIP_IMAGE_STD)
    pixels = ((rgb - mean) / std).view(1, 3, 1, 1).expand(1, 3, *IMAGE_SIZE)
    grey = model.grey_pixels(pixels)
    expected = [(0.2989 - m) / s for m, s in zip(CLIP_IMAGE_MEAN, CLIP_IMAGE_STD)]
    torch.testing.assert_close(grey[0, :, 0, 0], torch.tensor(expected))
    assert grey.shape == pixels.shape


def test_kept_patch_count_is_sens():
    """SEN draws the ratio over the class token and the patches, then keeps the class token."""
    fields = dict(clip_config=tiny_clip_config(), image_size=IMAGE_SIZE)  # 8 patches
    assert UITConfig(**fields).num_kept_patches == 1  # int(9 * 0.3) - 1 = 2 - 1
    assert UITConfig(**fields, tir_mask_ratio=0.5).num_kept_patches == 3  # int(9 * 0.5) - 1 = 4 - 1
    assert UITConfig(image_size=(384, 128)).num_kept_patches == 56  # ViT-B/16, 192 patches: int(193 * 0.3) - 1


def test_kept_patches_are_a_random_sorted_subset_of_the_configured_size(tester):
    model = tester.model(tir_mask_ratio=0.5)  # 3 of the 8 patches kept
    first = model.sample_kept_patches(16, "cpu", torch.Generator().manual_seed(3))
    again = model.sample_kept_patches(16, "cpu", torch.Generator().manual_seed(3))
    assert first.shape == (16, 3) and torch.equal(first, again)
    assert (first[:, :-1] < first[:, 1:]).all() and first.min() >= 0 and first.max() < 8
    assert len({tuple(row) for row in first.tolist()}) > 1  # per-image masks
    dropped = model.dropped_patches(first)
    assert dropped.shape == (16, 8) and (dropped.sum(dim=1) == 5).all()
    assert not dropped.gather(1, first).any()


# ----------------------------------------------------------------------------- the model's losses
def test_default_losses_and_weights(tester):
    model = tester.model()
    output = model(**tester.inputs())
    assert set(output.losses) == {"sdm", "id", "triplet", "tir"}
    config = UITConfig(clip_config=tiny_clip_config(), image_size=IMAGE_SIZE)
    assert (config.sdm_loss_weight, config.id_loss_weight, config.triplet_loss_weight, config.tir_loss_weight) == (1, 1, 10, 10)
    assert (config.triplet_margin, config.tir_mask_ratio, config.tir_decoder_layers) == (0.05, 0.7, 4)
    assert config.tir_grey_input == "normalised" and config.tir_text_bottleneck is True
    assert config.decoder_width == config.embed_dim == 24
    assert config.key_word_augmentation_probability == 0.2 and UITModel.text_transforms == ("key_word_augmentation",)
    s = output.losses
    torch.testing.assert_close(output.loss, s["sdm"] + s["id"] + 10 * s["triplet"] + 10 * s["tir"])


def test_triplet_term_is_the_hardest_negative_hinge_on_the_output_embeddings(tester):
    model = tester.model()
    inputs = tester.inputs()
    output = model(**inputs)
    images, texts, pids = output.image_embeds.tolist(), output.text_embeds.tolist(), inputs["pids"].tolist()
    n = len(pids)
    s = [[sum(a * b for a, b in zip(texts[i], images[j])) for j in range(n)] for i in range(n)]
    text_side = sum(max(0.0, 0.05 + max(s[i][j] for j in range(n) if pids[j] != pids[i]) - s[i][i]) for i in range(n)) / n
    image_side = sum(max(0.0, 0.05 + max(s[i][j] for i in range(n) if pids[i] != pids[j]) - s[j][j]) for j in range(n)) / n
    assert output.losses["triplet"].item() == pytest.approx(text_side + image_side, rel=1e-4, abs=1e-6)


def _tir(model, inputs, seed=5):
    return model(**inputs, generator=torch.Generator().manual_seed(seed)).losses["tir"]


def test_tir_scores_only_the_dropped_patches_against_the_colour_image(tester):
    model = tester.model().eval()
    inputs = tester.inputs()
    dropped = model.dropped_patches(model.sample_kept_patches(tester.batch_size, "cpu", torch.Generator().manual_seed(5)))
    decoder = model.restoration_decoder

    def tir_with_shift(where):
        """tir when the decoder's prediction is shifted by 7 on the patches ``where`` [N, P]; also the raw prediction."""
        captured = []

        def hook(module, args, output):
            captured.append(output)
            return output + 7.0 * where.unsqueeze(-1)

        handle = decoder.register_forward_hook(hook)
        try:
            return _tir(model, inputs), captured[0]
        finally:
            handle.remove()

    with torch.no_grad():
        reference, prediction = tir_with_shift(torch.zeros_like(dropped))
        on_kept, _ = tir_with_shift(~dropped)
        on_dropped, _ = tir_with_shift(dropped)
    # by hand: mean over the dropped patches of the per-patch MSE against the COLOUR patches
    squared = ((prediction - patchify(inputs["pixel_values"], 16)) ** 2).mean(dim=-1)
    torch.testing.assert_close(reference, squared[dropped].mean())
    torch.testing.assert_close(on_kept, reference, rtol=0, atol=0)
    assert on_dropped.item() > reference.item() + 1.0


@pytest.mark.parametrize("grey_input", ["normalised", "pixel"])
def test_encoder_sees_only_the_grey_kept_patches(tester, grey_input):
    """Same luma (colour changed) or any change inside dropped patches: the decoder input is the same.
    The luma is taken on the normalised channels (SEN) or in pixel space."""
    model = tester.model(tir_grey_input=grey_input).eval()
    inputs = tester.inputs()
    mean, std = torch.tensor(CLIP_IMAGE_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_IMAGE_STD).view(1, 3, 1, 1)
    rgb = torch.rand(tester.batch_size, 3, *IMAGE_SIZE, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.25
    pixels = (rgb - mean) / std
    # move colour along (1, -1, 0) scaled so that 0.2989 dr + 0.587 dg = 0: the luma is unchanged
    shift = 0.1 * torch.tensor([0.587, -0.2989, 0.0]).view(1, 3, 1, 1)
    recoloured = pixels + shift if grey_input == "normalised" else (rgb + shift - mean) / std
    keep = model.sample_kept_patches(tester.batch_size, "cpu", torch.Generator().manual_seed(5))
    dropped_pixels = unpatchify(model.dropped_patches(keep).unsqueeze(-1).expand(-1, -1, 16 * 16 * 3).float(), 16, GRID)
    scribbled = pixels + dropped_pixels * torch.rand(rgb.shape, generator=torch.Generator().manual_seed(2))
    predictions = []
    model.restoration_decoder.register_forward_hook(lambda module, args, output: predictions.append(output))
    with torch.no_grad():
        for image in (pixels, recoloured, scribbled):
            _tir(model, dict(inputs, pixel_values=image))
    torch.testing.assert_close(predictions[1], predictions[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(predictions[2], predictions[0], rtol=1e-5, atol=1e-5)


def test_tir_ignores_text_padding_and_uses_the_text(tester):
    model = tester.model().eval()
    inputs = tester.inputs()
    padded = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, 1234)
    other_text = dict(inputs, input_ids=inputs["input_ids"].roll(1, dims=0), attention_mask=inputs["attention_mask"].roll(1, dims=0))
    with torch.no_grad():
        reference = _tir(model, inputs)
        torch.testing.assert_close(_tir(model, dict(inputs, input_ids=padded)), reference)
        assert not torch.allclose(_tir(model, other_text), reference)


def test_mask_is_random_in_training_and_fixed_in_eval(tester):
    model = tester.model()
    inputs = tester.inputs()
    with torch.no_grad():
        torch.manual_seed(0)
        first = model(**inputs).losses["tir"]
        second = model(**inputs).losses["tir"]
        assert not torch.equal(first, second)
        model.eval()
        torch.testing.assert_close(model(**inputs).losses["tir"], model(**inputs).losses["tir"], rtol=0, atol=0)


# ----------------------------------------------------------------------------- switches, export
@pytest.mark.parametrize(
    "overrides, missing",
    [({"use_tir": False}, "tir"), ({"tir_loss_weight": 0.0}, "tir"), ({"triplet_loss_weight": 0.0}, "triplet"),
     ({"sdm_loss_weight": 0.0}, "sdm"), ({"id_loss_weight": 0.0}, "id")],
)
def test_each_component_switches_off(tester, overrides, missing):
    model = tester.model(**overrides)
    output = model(**tester.inputs())
    assert missing not in output.losses and len(output.losses) == 3
    if missing == "tir":
        assert model.restoration_decoder is None
        assert not any(name.startswith("restoration_decoder") for name in model.state_dict())
        with pytest.raises(ValueError, match="no restoration decoder"):
            model.restore_image(tester.inputs()["pixel_values"], tester.inputs()["input_ids"])
    if missing == "id":
        assert model.id_classifier is None


def test_none_of_its_additions_is_the_baseline_on_uits_embedding(tester):
    """The row switches off restoration, triplet and key-word augmentation: a step trains SDM + ID only,
    and the model is the clip_reid baseline (same parameters, same losses)."""
    from tireid_hf.modeling import ClipReIDModel

    assert UITConfig.zoo_contribution == "no restoration (TIR)"
    assert UITConfig.zoo_contribution in UITConfig.zoo_ablations
    overrides = UITConfig.zoo_ablations["none of its additions"]
    model = tester.model(**overrides)
    assert model.restoration_decoder is None and model.config.key_word_augmentation_probability == 0
    inputs = tester.inputs()
    output = model(**inputs)
    assert set(output.losses) == {"sdm", "id"} and torch.isfinite(output.loss)
    baseline_tester = ModelTester("clip_reid")
    baseline = ClipReIDModel(baseline_tester.config())
    baseline.load_state_dict(model.state_dict())  # strict: the same modules
    baseline_output = baseline(**inputs)
    torch.testing.assert_close(output.loss, baseline_output.loss)
    output.loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert torch.isfinite(model(**inputs).loss)


def test_export_drops_decoder_and_classifier_and_inference_is_plain_clip(tester):
    model = tester.model().eval()
    inputs = tester.inputs()
    exported = model.export_for_inference()
    assert exported.restoration_decoder is None and exported.id_classifier is None
    assert all(name.startswith(("clip.", "log_logit_scale")) for name in exported.state_dict())
    with torch.no_grad():
        clip_images = model.clip.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
        clip_texts = model.clip.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).pooler_output
        torch.testing.assert_close(exported.get_image_features(inputs["pixel_values"]), torch.nn.functional.normalize(clip_images, dim=-1))
        torch.testing.assert_close(exported.get_text_features(inputs["input_ids"], inputs["attention_mask"]),
                                   torch.nn.functional.normalize(clip_texts, dim=-1))


def test_sincos_buffer_is_rebuilt_and_mask_token_kept_on_load(tester, tmp_path):
    model = tester.model()
    with torch.no_grad():
        model.restoration_decoder.mask_token.fill_(0.5)  # a trained value, not the zero initialisation
    model.save_pretrained(tmp_path)
    loaded = UITModel.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded.restoration_decoder.mask_token, torch.full((1, 1, 32), 0.5))
    expected = torch.cat([torch.zeros(1, 32), sincos_position_table(32, GRID)]).unsqueeze(0)
    torch.testing.assert_close(loaded.restoration_decoder.position_embedding, expected)


def test_config_refuses_bad_values():
    fields = dict(clip_config=tiny_clip_config(), image_size=IMAGE_SIZE)
    with pytest.raises(ValueError, match="at least one patch must be kept"):
        UITConfig(**fields, tir_mask_ratio=0.99)
    with pytest.raises(ValueError, match="tir_decoder_width"):
        UITConfig(**fields, tir_decoder_width=30, tir_decoder_heads=3)
    with pytest.raises(ValueError, match="tir_grey_input"):
        UITConfig(**fields, tir_grey_input="rgb")
    with pytest.raises(ValueError, match="image_mean"):
        UITConfig(**fields, image_std=(0.2, 0.2))
    assert UITConfig(**fields, tir_decoder_width=64).to_dict()["tir_decoder_width"] == 64


# ----------------------------------------------------------------------------- visualisation
def test_restore_image_shapes_and_kept_patches_show_the_grey_input(tester):
    model = tester.model().eval()
    inputs = tester.inputs()
    masked_grey, restored = model.restore_image(inputs["pixel_values"], inputs["input_ids"], inputs["attention_mask"],
                                                generator=torch.Generator().manual_seed(5))
    assert masked_grey.shape == restored.shape == inputs["pixel_values"].shape
    keep = model.sample_kept_patches(tester.batch_size, "cpu", torch.Generator().manual_seed(5))
    dropped = model.dropped_patches(keep)
    grey = patchify(model.grey_pixels(inputs["pixel_values"]), 16)
    torch.testing.assert_close(patchify(masked_grey, 16)[~dropped], grey[~dropped])
    assert (patchify(masked_grey, 16)[dropped] == 0).all()
    torch.testing.assert_close(patchify(restored, 16)[~dropped], grey[~dropped])


def test_restoration_figure_has_the_documented_layout(tester):
    model = tester.model()
    processor = TIReIDProcessor.for_image_size(IMAGE_SIZE)
    photo = Image.new("RGB", (50, 120), (200, 30, 30))
    figure = restoration_figure(model, processor, photo, "a man in a red coat with a black bag", seed=1)
    assert isinstance(figure, Image.Image) and figure.mode == "RGB"
    height, width = IMAGE_SIZE
    assert figure.width == 3 * width + 4 * MARGIN
    assert figure.height > height + 2 * MARGIN
    assert model.training  # the model's mode is restored
    again = restoration_figure(model, processor, photo, "a man in a red coat with a black bag", seed=1)
    assert figure.tobytes() == again.tobytes()


# ----------------------------------------------------------------------------- it learns
def test_short_training_run_learns_retrieval_and_restoration(tester):
    """Four people in four plain colours: the grey, masked image cannot tell the colour, the caption can."""
    inputs = tester.inputs(seed=3)
    inputs["pids"] = torch.tensor([0, 1, 2, 3])
    colours = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.9], [0.8, 0.8, 0.1]])
    mean, std = torch.tensor(CLIP_IMAGE_MEAN), torch.tensor(CLIP_IMAGE_STD)
    noise = 0.05 * torch.randn(4, 3, *IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    inputs["pixel_values"] = ((colours - mean) / std).view(4, 3, 1, 1) + noise
    torch.manual_seed(0)
    model = UITModel(tester.config(num_ids=4))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)

    def evaluate():  # eval mode: the same patch mask every time
        model.eval()
        with torch.no_grad():
            output = model(**inputs)
        model.train()
        return output

    first = evaluate()
    for _ in range(40):
        optimizer.zero_grad()
        model(**inputs).loss.backward()
        optimizer.step()
    last = evaluate()
    assert last.loss.item() < 0.5 * first.loss.item()
    assert last.losses["tir"].item() < 0.5 * first.losses["tir"].item()
    assert torch.equal(last.logits_per_text.argmax(dim=1), torch.arange(4))


def test_text_bottleneck_passes_everything_through_the_caption():
    """SEN's bottleneck: with a one-token caption the attention weights are 1, so the restored patches
    cannot depend on the image at all; the residual variant still sees the image tokens."""
    from tireid_hf.modeling.modeling_uit import RestorationDecoder

    torch.manual_seed(0)
    keep = torch.tensor([[0, 3, 5]] * 2)
    images = torch.randn(2, 4, 24)  # class token + 3 kept patches, two different images
    images[1] = torch.randn(4, 24)
    one_token_text = torch.randn(1, 1, 24).expand(2, -1, -1)
    outputs = {}
    for bottleneck in (True, False):
        decoder = RestorationDecoder(24, 16, 4, 1, 2.0, GRID, 16, text_bottleneck=bottleneck).eval()
        with torch.no_grad():
            outputs[bottleneck] = decoder(images, keep, one_token_text)
    torch.testing.assert_close(outputs[True][0], outputs[True][1])
    assert not torch.allclose(outputs[False][0], outputs[False][1])


def test_decoder_text_input_is_layer_norm_only_at_the_joint_width():
    """As SEN: the caption tokens enter the decoder through a LayerNorm alone when the decoder has the
    joint width; a Linear resizes them only when the widths differ."""
    from tireid_hf.modeling.modeling_uit import RestorationDecoder

    torch.manual_seed(0)
    same = RestorationDecoder(24, 24, 4, 1, 2.0, GRID, 16)
    text = torch.randn(2, 5, 24)
    expected = (text - text.mean(-1, keepdim=True)) / torch.sqrt(text.var(-1, unbiased=False, keepdim=True) + 1e-5)
    torch.testing.assert_close(same.text_embed(text), expected)
    assert not any(name.startswith("text_embed") and "weight" in name and p.dim() == 2 for name, p in same.named_parameters())
    assert RestorationDecoder(24, 16, 4, 1, 2.0, GRID, 16).text_embed(text).shape == (2, 5, 16)


def test_bottleneck_is_the_default_and_the_residual_variant_an_option(tester):
    from tireid_hf.modeling.layers import DecoderLayer
    from tireid_hf.modeling.modeling_uit import TextBottleneck

    assert UITConfig().tir_text_bottleneck is True
    assert isinstance(tester.model().restoration_decoder.text_attention, TextBottleneck)
    assert isinstance(tester.model(tir_text_bottleneck=False).restoration_decoder.text_attention, DecoderLayer)
