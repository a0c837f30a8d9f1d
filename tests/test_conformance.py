"""What a user of the transformers ecosystem relies on, held for every registered method: loading a
checkpoint with missing or unexpected tensors as transformers does (initialised with the right init,
reported, warned), the attention backends declared, ``return_dict`` / ``output_hidden_states`` /
``output_attentions`` as in transformers, and the training path exporting with torch.export.
transformers' own ModelTesterMixin runs in tests/conformance_transformers.py (``make conformance``)."""

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPModel

from tireid_hf.modeling import METHODS
from tireid_hf.modeling.base import TIReIDOutput
from tester import ModelTester, tiny_clip_config


@pytest.fixture(params=sorted(METHODS))
def tester(request):
    return ModelTester(request.param)


def test_an_inference_export_loads_into_a_training_model_and_reports_what_it_initialised(tester, tmp_path):
    model = tester.model()
    model.export_for_inference().save_pretrained(tmp_path)
    loaded, info = tester.model_class.from_pretrained(tmp_path, inference_only=False, output_loading_info=True)
    trained_only = set(model.state_dict()) - set(model.export_for_inference().state_dict())
    assert info["missing_keys"] == trained_only and not info["unexpected_keys"]
    inputs = tester.inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded.get_image_features(inputs["pixel_values"]),
                                   model.get_image_features(inputs["pixel_values"]))


def test_missing_clip_tensors_get_clips_own_init_and_loaded_ones_stay(tester, tmp_path):
    tester.model().save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    dropped = {key for key in saved if key.startswith("clip.text_model.encoder.layers.0.") or key == "clip.logit_scale"}
    save_file({key: value for key, value in saved.items() if key not in dropped}, tmp_path / "model.safetensors",
              metadata={"format": "pt"})
    torch.manual_seed(0)
    loaded, info = tester.model_class.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == dropped
    for key, value in loaded.state_dict().items():
        if key in saved and key not in dropped:
            assert torch.equal(value, saved[key]), key
    # CLIP's init (hidden 32, 2 layers, factor 1): q_proj N(0, 32^-0.5 * 4^-0.5 = 0.0884), fc1 N(0, 64^-0.5 = 0.125)
    layer = loaded.clip.text_model.encoder.layers[0]
    assert abs(layer.self_attn.q_proj.weight.std().item() - 0.0884) < 0.012
    assert abs(layer.mlp.fc1.weight.std().item() - 0.125) < 0.015
    assert loaded.clip.logit_scale.item() == pytest.approx(CLIPModel(tiny_clip_config()).config.logit_scale_init_value)


def test_a_shape_mismatch_is_still_refused_by_name(tester, tmp_path):
    tester.model(num_ids=tester.num_ids + 2).save_pretrained(tmp_path)
    if not any("classifier" in key for key in tester.model().state_dict()):
        pytest.skip("this method's default config has no ID classifier")
    with pytest.raises(ValueError, match="mismatched_keys: .*classifier"):
        tester.model_class.from_pretrained(tmp_path, num_ids=tester.num_ids)


def test_the_clip_backbones_attention_backends_are_declared(tester):
    model_class = tester.model_class
    assert model_class._supports_sdpa and model_class._supports_flash_attn and model_class._supports_flex_attn
    assert model_class._supports_attention_backend


def test_return_dict_false_gives_the_outputs_tuple_from_the_argument_or_the_config(tester):
    model, inputs = tester.model().eval(), tester.inputs()
    with torch.no_grad():
        output = model(**inputs)
        from_argument = model(**inputs, return_dict=False)
        model.config.return_dict = False
        from_config = model(**inputs)
        overridden = model(**inputs, return_dict=True)
    expected = (output.loss, output.losses, output.image_embeds, output.text_embeds, output.logits_per_text)
    for result in (from_argument, from_config):
        assert type(result) is tuple and len(result) == len(expected)
        torch.testing.assert_close(result, expected, rtol=0, atol=0)
    assert isinstance(overridden, TIReIDOutput)


def test_hidden_states_and_attentions_are_the_clip_towers_over_the_batch(tester):
    model, inputs = tester.model().eval(), tester.inputs()
    model.set_attn_implementation("eager")
    layers = model.config.clip_config.text_config.num_hidden_layers
    with torch.no_grad():
        plain = model(**inputs)
        output = model(**inputs, output_hidden_states=True, output_attentions=True)
        text = model.clip.text_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        vision = model.clip.vision_model(pixel_values=inputs["pixel_values"])
        as_tuple = model(**inputs, output_hidden_states=True, return_dict=False)
    assert plain.text_model_output is None and plain.vision_model_output is None
    for tower, expected, length in ((output.text_model_output, text, tester.text_length),
                                    (output.vision_model_output, vision, 1 + 4 * 2)):
        assert len(tower.hidden_states) == layers + 1 and len(tower.attentions) == layers
        assert tower.hidden_states[0].shape == (tester.batch_size, length, 32)
        assert tower.attentions[0].shape == (tester.batch_size, 4, length, length)
        torch.testing.assert_close(tower.last_hidden_state, expected.last_hidden_state, rtol=0, atol=0)
    torch.testing.assert_close(output.logits_per_text, plain.logits_per_text, rtol=0, atol=0)
    torch.testing.assert_close(output.loss, plain.loss, rtol=0, atol=0)
    vision_tower = output.vision_model_output
    torch.testing.assert_close(as_tuple[-1], (vision_tower.last_hidden_state, vision_tower.pooler_output,
                                              vision_tower.hidden_states), rtol=0, atol=0)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_training_path_exports_with_torch_export(method):
    tester = ModelTester(method)
    model = tester.model().train()
    inputs = tester.inputs()
    inputs.pop("generator", None)
    program = torch.export.export(model, args=(), kwargs=inputs, strict=False)
    exported = program.module()(**inputs)
    assert torch.isfinite(exported.loss) and set(exported.losses) == set(model(**inputs).losses)
