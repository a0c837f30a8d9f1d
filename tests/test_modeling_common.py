"""Checks every registered method must pass: forward, backward, save/load, remote code, export,
registration and the bad inputs of the shared base (like timm's tests over list_models())."""

import dataclasses
import json

import pytest
import torch
from transformers import AutoConfig, AutoModel

import tireid_hf
from tireid_hf.modeling import METHODS
from helpers import assert_remote_code_matches
from tester import IMAGE_SIZE, ModelTester, tiny_clip_config

ALL_METHODS = sorted(METHODS)


@pytest.fixture(params=ALL_METHODS)
def tester(request):
    return ModelTester(request.param)


def test_forward_returns_the_documented_output(tester):
    model = tester.model()
    inputs = tester.inputs()
    output = model(**inputs)
    batch = tester.batch_size
    assert output.image_embeds.shape == (batch, model.config.embed_dim)
    assert output.text_embeds.shape == (batch, model.config.embed_dim)
    assert output.logits_per_text.shape == (batch, batch)
    torch.testing.assert_close(output.image_embeds.norm(dim=-1), torch.ones(batch))
    torch.testing.assert_close(output.text_embeds.norm(dim=-1), torch.ones(batch))
    assert output.losses and all(value.dim() == 0 and torch.isfinite(value) for value in output.losses.values())
    expected = sum(model.config.loss_weight(name) * value for name, value in output.losses.items())
    torch.testing.assert_close(output.loss, expected)


def test_forward_without_pids_computes_no_loss(tester):
    inputs = tester.inputs()
    inputs.pop("pids")
    output = tester.model()(**inputs)
    assert output.loss is None and output.losses == {}


def test_backward_reaches_every_trainable_parameter(tester):
    model = tester.model()
    model(**tester.inputs()).loss.backward()
    assert not model.clip.logit_scale.requires_grad  # CLIP's own scale is unused: the temperature is the config's
    without_gradient = [
        name for name, parameter in model.named_parameters()
        if parameter.requires_grad and (parameter.grad is None or not parameter.grad.abs().sum() > 0)
    ]
    assert without_gradient == []


def test_retrieval_features_match_forward_embeddings(tester):
    model = tester.model().eval()
    inputs = tester.inputs()
    with torch.no_grad():
        output = model(**inputs)
        images = model.get_image_features(pixel_values=inputs["pixel_values"])
        texts = model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    torch.testing.assert_close(images, output.image_embeds)
    torch.testing.assert_close(texts, output.text_embeds)


def test_save_load_round_trip_gives_identical_outputs(tester, tmp_path):
    model = tester.model().eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is tester.model_class
    inputs = tester.inputs()
    with torch.no_grad():
        before, after = model(**inputs), loaded(**inputs)
    for name in ("image_embeds", "text_embeds", "logits_per_text", "loss"):
        torch.testing.assert_close(getattr(after, name), getattr(before, name), rtol=0, atol=0)


def test_export_for_inference_drops_training_parts_and_keeps_embeddings(tester, tmp_path):
    model = tester.model().eval()
    exported = model.export_for_inference()
    assert exported.config.inference_only
    assert sum(p.numel() for p in exported.parameters()) <= sum(p.numel() for p in model.parameters())
    exported.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path)
    inputs = tester.inputs()
    with torch.no_grad():
        for candidate in (exported, reloaded):
            torch.testing.assert_close(candidate.get_image_features(inputs["pixel_values"]),
                                       model.get_image_features(inputs["pixel_values"]), rtol=0, atol=0)
            torch.testing.assert_close(candidate.get_text_features(inputs["input_ids"], inputs["attention_mask"]),
                                       model.get_text_features(inputs["input_ids"], inputs["attention_mask"]), rtol=0, atol=0)
        assert reloaded(**inputs).loss is None


def test_fresh_process_loads_remote_code_without_the_package(tester, tmp_path):
    model = tester.model().eval()
    folder = tmp_path / "checkpoint"
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel"}
    for module_path in config["auto_map"].values():
        assert (folder / (module_path.split(".")[0] + ".py")).is_file()
    inputs = tester.inputs()
    assert_remote_code_matches(folder, model, inputs, tmp_path)


def test_auto_classes_are_registered(tester):
    config_class, model_class = tester.config_class, tester.model_class
    assert AutoConfig.for_model(config_class.model_type).__class__ is config_class
    config = AutoConfig.for_model(config_class.model_type, clip_config=tiny_clip_config().to_dict(), image_size=IMAGE_SIZE)
    assert isinstance(AutoModel.from_config(config), model_class)
    assert config_class.model_type == f"tireid-{tester.method}"


def test_checkpoint_of_another_method_is_refused(tester, tmp_path):
    tester.model().save_pretrained(tmp_path)
    other = next((model for name, (_, model) in METHODS.items() if name != tester.method), None)
    if other is None:  # only one method registered so far: use the base config class instead
        other = type("OtherModel", (tester.model_class,), {"config_class": type(
            "OtherConfig", (tester.config_class,), {"model_type": "tireid-other"})})
    with pytest.raises(ValueError, match=f"model_type='tireid-{tester.method}'"):
        other.from_pretrained(tmp_path)


def test_weights_that_do_not_match_are_refused(tester, tmp_path):
    # a 2x2 position table instead of 4x2 (UIT keeps int(5 x 0.5) - 1 = 1 of its 4 patches: SEN's count)
    tester.model(image_size=(32, 32), **({"tir_mask_ratio": 0.5} if tester.method == "uit" else {})).save_pretrained(tmp_path)
    with pytest.raises((ValueError, RuntimeError), match="position_embedding"):
        tester.model_class.from_pretrained(tmp_path, image_size=list(IMAGE_SIZE))


def test_wrong_pixel_size_and_overlong_text_are_refused(tester):
    model = tester.model()
    with pytest.raises(ValueError, match=r"pixel_values must have shape \[batch, 3, 64, 32\]"):
        model.get_image_features(torch.zeros(1, 3, 384, 128))
    with pytest.raises(ValueError, match="length <= 77"):
        model.get_text_features(torch.ones(1, 78, dtype=torch.long))


def _has_id_loss_on_by_default(method):
    config_class = METHODS[method][0]
    return any(field.name.endswith("id_loss_weight") and field.default != 0 for field in dataclasses.fields(config_class))


@pytest.mark.parametrize("method", [method for method in ALL_METHODS if _has_id_loss_on_by_default(method)])
def test_id_loss_without_num_ids_is_an_error_not_a_silent_skip(method):
    tester = ModelTester(method)
    model = tester.model(num_ids=0)
    with pytest.raises(ValueError, match="num_ids is 0"):
        model(**tester.inputs())


def _is_id_term(loss_name):
    return loss_name == "id" or loss_name.startswith("id_") or loss_name.endswith("_id")


def _id_terms_on_by_default(method):
    config_class = METHODS[method][0]
    return [field.name.removesuffix("_loss_weight") for field in dataclasses.fields(config_class)
            if field.name.endswith("_loss_weight") and _is_id_term(field.name.removesuffix("_loss_weight"))
            and field.default != 0]


@pytest.mark.parametrize("method", [method for method in ALL_METHODS if _id_terms_on_by_default(method)])
def test_each_id_loss_alone_trains_both_encoders(method):
    # "every parameter gets a gradient" cannot see an ID loss fed detached features: the alignment
    # loss reaches the backbone anyway. Here each ID term is back-propagated ALONE.
    tester = ModelTester(method)
    model = tester.model()
    losses = model(**tester.inputs()).losses
    id_terms = [name for name in losses if _is_id_term(name)]
    assert id_terms, sorted(losses)  # at least one of _id_terms_on_by_default(method) is computed
    first_layers = {"image": model.clip.vision_model.embeddings.patch_embedding.weight,
                    "text": model.clip.text_model.embeddings.token_embedding.weight}
    for name in id_terms:
        model.zero_grad()
        losses[name].backward(retain_graph=True)
        for tower, weight in first_layers.items():
            assert weight.grad is not None and weight.grad.abs().sum() > 0, f"{name} does not reach the {tower} encoder"


def test_package_exports_and_version():
    assert tireid_hf.__version__
    assert "clip_reid" in METHODS


def test_decoder_layer_ignores_padded_memory_and_shapes():
    from tireid_hf.modeling.layers import DecoderLayer

    torch.manual_seed(0)
    layer = DecoderLayer(width=8, num_heads=2).eval()
    queries, memory = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    padding = torch.tensor([[False, False, False, True, True]] * 2)
    changed = memory.clone()
    changed[:, 3:] = 100.0  # only padded positions change
    out, attention = layer(queries, memory, memory_padding_mask=padding, return_attention=True)
    assert out.shape == (2, 3, 8) and attention.shape == (2, 3, 5)
    torch.testing.assert_close(attention[..., 3:], torch.zeros(2, 3, 2))
    torch.testing.assert_close(layer(queries, changed, memory_padding_mask=padding), out)
    with pytest.raises(ValueError, match="memory"):
        layer(queries)


def test_encode_image_with_kept_patches_equals_encoding_the_selected_tokens():
    tester = ModelTester("clip_reid")
    model = tester.model().eval()
    pixels = tester.inputs()["pixel_values"]
    keep = torch.tensor([[0, 5, 2]] * pixels.shape[0])
    with torch.no_grad():
        partial = model.encode_image(pixels, return_tokens=True, keep_patches=keep)
        vision = model.clip.vision_model
        embeddings = vision.embeddings(pixels)[:, [0, 1, 6, 3]]
        hidden = vision.encoder(inputs_embeds=vision.pre_layrnorm(embeddings)).last_hidden_state
        expected = model.clip.visual_projection(vision.post_layernorm(hidden))
    assert partial.token_features.shape == (pixels.shape[0], 4, model.config.embed_dim)
    torch.testing.assert_close(partial.token_features, expected)
    with pytest.raises(ValueError, match="keep_patches"):
        model.encode_image(pixels, keep_patches=torch.tensor([0, 1]))


def test_multi_head_attention_loads_torch_weights_and_matches_torch():
    """Same parameter names and outputs as nn.MultiheadAttention (with padding, with weights), so
    checkpoints made with torch's module load; a free head width changes only the inner shapes."""
    from tireid_hf.modeling.layers import MultiHeadAttention

    torch.manual_seed(0)
    reference = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()
    ours = MultiHeadAttention(8, 2).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    query, memory = torch.randn(3, 4, 8), torch.randn(3, 6, 8)
    padding = torch.tensor([[False] * 6, [False] * 4 + [True] * 2, [False] + [True] * 5])
    expected, expected_weights = reference(query, memory, memory, key_padding_mask=padding, need_weights=True)
    out, weights = ours(query, memory, memory, key_padding_mask=padding, need_weights=True)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(ours(query, memory, memory, key_padding_mask=padding)[0], expected)

    wide = MultiHeadAttention(8, 2, head_dim=16)
    assert wide.in_proj_weight.shape == (3 * 32, 8) and wide.out_proj.weight.shape == (8, 32)
    assert wide(query, memory, memory)[0].shape == (3, 4, 8)


def test_capabilities_are_declared_by_the_base_and_refuse_clearly_where_absent(tester):
    from tireid_hf.visualize import restoration_figure

    model = tester.model().eval()
    exported = model.export_for_inference()
    inputs = tester.inputs()
    one_text = (inputs["input_ids"][:1], inputs["attention_mask"][:1])
    assert model.can_restore_images == (tester.method == "uit") and not exported.can_restore_images
    with pytest.raises(ValueError, match="restor"):
        exported.restore_image(inputs["pixel_values"], inputs["input_ids"])
    with pytest.raises(ValueError, match="cannot restore images"):
        restoration_figure(exported, None, None, "a caption")
    if model.has_rerank_stage:
        assert model.can_rerank and model.rerank_k == model.config.rerank_k > 0
        assert model.rerank_scores(*one_text, inputs["pixel_values"]).shape == (tester.batch_size,)
    else:
        assert not model.can_rerank and model.rerank_k == 0
        with pytest.raises(ValueError, match="no second retrieval stage"):
            model.rerank_scores(*one_text, inputs["pixel_values"])
