"""`tireid convert`: reference checkpoints into zoo / CLIPModel folders, proven against the reference code.

The fixtures in tests/fixtures/reference/ were made by running the reference implementations
(anosorae/IRRA, openai/CLIP) at a tiny size with random weights; NOTE.md there says exactly how.
"""

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from transformers import AutoModel, CLIPConfig, CLIPModel

import tireid_hf  # noqa: F401  (registers the Auto classes)
from helpers import assert_remote_code_matches
from tireid_hf.cli import main
from tireid_hf.convert import ConversionError, convert_irra, convert_openai_clip
from tireid_hf.modeling import ClipReIDModel

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "reference"
IRRA_IMAGE_SIZE = ("32", "16")  # the fixture's img_size (stride = patch = 8: a 4 x 2 grid)
IRRA_MLM_TENSORS = 28  # cross_attn (4), cross_modal_transformer (12), ln_pre_t/ln_pre_i/ln_post (6), mlm_head (6)


def irra_state() -> dict:
    return load_file(FIXTURES / "irra_tiny.safetensors")


def save_as_irra_checkpoint(state: dict, path: Path) -> Path:
    """As IRRA's Checkpointer saves best.pth: the model's state dict beside optimizer state and counters."""
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5}]}, "num_epoch": 60,
                "iteration": 0, "epoch": 37}, path)
    return path


def text_mask(input_ids: torch.Tensor) -> torch.Tensor:
    """1 up to and including the end-of-text token (the highest id), 0 on the zero padding after it."""
    return (torch.arange(input_ids.shape[1])[None] <= input_ids.argmax(-1)[:, None]).long()


def assert_matches_reference(image_embeds, text_embeds, reference):
    """Normalised embeddings within 1e-5 of the reference's, and the same ranking of every query."""
    expected_images = F.normalize(reference["image_features"].float(), dim=-1)
    expected_texts = F.normalize(reference["text_features"].float(), dim=-1)
    torch.testing.assert_close(image_embeds, expected_images, rtol=0, atol=1e-5)
    torch.testing.assert_close(text_embeds, expected_texts, rtol=0, atol=1e-5)
    ranking = (text_embeds @ image_embeds.T).argsort(dim=1, descending=True)
    assert torch.equal(ranking, (expected_texts @ expected_images.T).argsort(dim=1, descending=True))


def run_convert(*argv):
    return main(["convert", *map(str, argv)])


# ------------------------------------------------------------------------------------------- irra
def test_irra_checkpoint_converts_to_clip_reid_matching_the_reference_embeddings(tmp_path, capsys):
    checkpoint = save_as_irra_checkpoint(irra_state(), tmp_path / "best.pth")
    out = tmp_path / "irra-tiny"
    assert run_convert("irra", checkpoint, "--out", out, "--image-size", *IRRA_IMAGE_SIZE) == 0
    assert "clip_reid from best.pth" in capsys.readouterr().out

    model = AutoModel.from_pretrained(out).eval()
    assert isinstance(model, ClipReIDModel) and model.config.image_size == (32, 16)
    reference = load_file(FIXTURES / "irra_reference.safetensors")
    inputs = {"pixel_values": reference["pixel_values"], "input_ids": reference["input_ids"],
              "attention_mask": text_mask(reference["input_ids"])}
    with torch.no_grad():
        assert_matches_reference(model.get_image_features(inputs["pixel_values"]),
                                 model.get_text_features(inputs["input_ids"], inputs["attention_mask"]), reference)
    # the rectangular table as stored, the ID head kept as the zoo's ID classifier
    stored = irra_state()
    torch.testing.assert_close(model.clip.vision_model.embeddings.position_embedding.weight,
                               stored["base_model.visual.positional_embedding"].float(), rtol=0, atol=0)
    torch.testing.assert_close(model.id_classifier.weight, stored["classifier.weight"].float(), rtol=0, atol=0)
    assert model.config.num_ids == 8

    report = json.loads((out / "conversion.json").read_text())
    (group, dropped), = report["dropped"].items()
    assert group.startswith("mlm") and len(dropped) == IRRA_MLM_TENSORS
    assert sorted(dropped) == sorted(name for name in stored if name.startswith(
        ("cross_attn.", "cross_modal_transformer.", "ln_pre_t.", "ln_pre_i.", "ln_post.", "mlm_head.")))
    assert "not CLIP's 49408" in report["processor"]  # the tiny vocabulary is not CLIP's: no tokenizer written
    assert_remote_code_matches(out, model, inputs, tmp_path)


def test_sen_checkpoint_converts_to_an_inference_only_uit_listing_the_decoder(tmp_path):
    state = irra_state()
    sen = {name.replace("cross_attn.", "cross_attn_mlm.").replace("cross_modal_transformer.", "cross_modal_transformer_mlm."): value
           for name, value in state.items()}
    sen.update({"decoder_embed.weight": torch.zeros(64, 64), "mask_token": torch.zeros(1, 1, 64),
                "cross_attn_Text.in_proj_weight": torch.zeros(192, 64), "norm_6.weight": torch.ones(64),
                "decoder_pred.weight": torch.zeros(192, 64), "fuse_head.dense.weight": torch.zeros(256, 128)})
    report = convert_irra(save_as_irra_checkpoint(sen, tmp_path / "sen.pth"), tmp_path / "uit", variant="sen",
                          image_size=(32, 16))
    model = AutoModel.from_pretrained(tmp_path / "uit").eval()
    assert model.config.model_type == "tireid-uit" and model.config.inference_only
    reference = load_file(FIXTURES / "irra_reference.safetensors")
    with torch.no_grad():
        assert_matches_reference(model.get_image_features(reference["pixel_values"]),
                                 model.get_text_features(reference["input_ids"], text_mask(reference["input_ids"])),
                                 reference)
    dropped = report["dropped"]
    assert any(name == "decoder_pred.weight" for name in dropped["restoration decoder (does not map onto the zoo's)"])
    assert dropped["id classifier (not needed for retrieval)"] == ["classifier.bias", "classifier.weight"]
    assert len(dropped["mlm"]) == IRRA_MLM_TENSORS and dropped["fusion head"] == ["fuse_head.dense.weight"]


def test_rde_heads_are_listed_and_dropped(tmp_path):
    state = dict(irra_state(), **{"visul_emb_layer.fc.weight": torch.zeros(64, 64),
                                  "texual_emb_layer.fc.weight": torch.zeros(64, 64)})
    report = convert_irra(save_as_irra_checkpoint(state, tmp_path / "rde.pth"), tmp_path / "rde", variant="rde",
                          image_size=(32, 16))
    assert report["dropped"]["tse (token selection embedding)"] == ["texual_emb_layer.fc.weight", "visul_emb_layer.fc.weight"]
    assert "BGE" in report["note"]


@pytest.mark.parametrize("change, message", [
    (lambda state: state.update({"extra_head.weight": torch.zeros(2)}), "extra_head.weight"),
    (lambda state: state.update({"base_model.visual.extra": torch.zeros(2)}), "not in OpenAI's CLIP ViT layout: visual.extra"),
    (lambda state: state.pop("base_model.visual.ln_post.bias"), "missing: clip.vision_model.post_layernorm.bias"),
    (lambda state: state.update({"base_model.ln_final.weight": torch.ones(32)}),
     "clip.text_model.final_layer_norm.weight (model [64], checkpoint [32])"),
    (lambda state: state.update({"classifier.weight": torch.zeros(8, 32)}), "id_classifier.weight (model [8, 64]"),
])
def test_irra_checkpoint_that_does_not_fit_is_refused_naming_the_tensors_and_nothing_is_written(tmp_path, change, message):
    state = irra_state()
    change(state)
    checkpoint = save_as_irra_checkpoint(state, tmp_path / "best.pth")
    with pytest.raises(SystemExit, match="tireid convert irra: .*" + re.escape(message)):
        run_convert("irra", checkpoint, "--out", tmp_path / "out", "--image-size", *IRRA_IMAGE_SIZE)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["best.pth"]


def test_irra_image_size_must_fit_the_stored_position_table(tmp_path):
    checkpoint = save_as_irra_checkpoint(irra_state(), tmp_path / "best.pth")
    with pytest.raises(ConversionError, match=r"holds 8 patch positions, but image_size 384x128 at patch 8 makes a 48x16 grid"):
        convert_irra(checkpoint, tmp_path / "out")


def test_checkpoints_of_another_layout_are_refused_with_a_hint(tmp_path):
    openai_file = tmp_path / "ViT-tiny.pt"
    torch.save(load_file(FIXTURES / "openai_tiny.safetensors"), openai_file)
    with pytest.raises(ConversionError, match="not an IRRA-layout checkpoint.*tireid convert openai-clip"):
        convert_irra(openai_file, tmp_path / "out", image_size=(32, 16))
    resnet = {"visual.layer1.0.conv1.weight": torch.zeros(1), "visual.attnpool.positional_embedding": torch.zeros(1)}
    torch.save(resnet, tmp_path / "RN50.pt")
    with pytest.raises(ConversionError, match="ResNet image encoder"):
        convert_openai_clip(tmp_path / "RN50.pt", tmp_path / "out")
    torch.save({"model": {"base_model.visual.proj": "not a tensor"}}, tmp_path / "odd.pth")
    with pytest.raises(ConversionError, match="not tensors: base_model.visual.proj"):
        convert_irra(tmp_path / "odd.pth", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------- openai-clip
class _Holder(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def save_torchscript_archive(state: dict, path: Path) -> Path:
    """A TorchScript archive holding `state` under the same names (as OpenAI's released .pt files do),
    with the scalars OpenAI's archives carry beside the weights."""
    root = _Holder()
    for name, value in dict(state, input_resolution=torch.tensor(16), context_length=torch.tensor(16),
                            vocab_size=torch.tensor(256)).items():
        *path_parts, leaf = name.split(".")
        module = root
        for part in path_parts:
            if part not in module._modules:
                module.add_module(part, _Holder())
            module = module._modules[part]
        module.register_buffer(leaf, value)
    torch.jit.script(root).save(str(path))
    return path


@pytest.mark.parametrize("container", ["state_dict", "torchscript"])
def test_openai_clip_file_converts_to_a_clip_model_matching_the_reference(tmp_path, container):
    state = load_file(FIXTURES / "openai_tiny.safetensors")
    if container == "torchscript":
        checkpoint = save_torchscript_archive(state, tmp_path / "ViT-tiny.pt")
    else:
        checkpoint = tmp_path / "ViT-tiny.pt"
        torch.save(state, checkpoint)
    out = tmp_path / "clip"
    assert run_convert("openai-clip", checkpoint, "--out", out) == 0
    model = CLIPModel.from_pretrained(out).eval()
    reference = load_file(FIXTURES / "openai_reference.safetensors")
    with torch.no_grad():
        images = model.get_image_features(pixel_values=reference["pixel_values"]).pooler_output
        texts = model.get_text_features(input_ids=reference["input_ids"]).pooler_output
    assert_matches_reference(F.normalize(images, dim=-1), F.normalize(texts, dim=-1), reference)
    torch.testing.assert_close(model.logit_scale, state["logit_scale"].float())
    report = json.loads((out / "conversion.json").read_text())
    assert report["dropped"] == ({"torchscript metadata": ["context_length", "input_resolution", "vocab_size"]}
                                 if container == "torchscript" else {})
    # usable as clip_name_or_path: a zoo model built around it keeps CLIP's text tower as converted
    zoo = ClipReIDModel.from_clip(str(out), image_size=(32, 16)).eval()
    with torch.no_grad():
        torch.testing.assert_close(zoo.get_text_features(reference["input_ids"], text_mask(reference["input_ids"])),
                                   F.normalize(texts, dim=-1), rtol=0, atol=1e-6)


def openai_layout_of(model: CLIPModel) -> dict:
    """The test's own inverse of the converter: a `transformers` CLIPModel's weights under OpenAI's names."""
    hf = model.state_dict()
    state = {"visual.conv1.weight": hf["vision_model.embeddings.patch_embedding.weight"],
             "visual.class_embedding": hf["vision_model.embeddings.class_embedding"],
             "visual.positional_embedding": hf["vision_model.embeddings.position_embedding.weight"],
             "visual.proj": hf["visual_projection.weight"].T, "text_projection": hf["text_projection.weight"].T,
             "token_embedding.weight": hf["text_model.embeddings.token_embedding.weight"],
             "positional_embedding": hf["text_model.embeddings.position_embedding.weight"],
             "logit_scale": hf["logit_scale"]}
    for ours, theirs in (("visual.ln_pre", "vision_model.pre_layrnorm"), ("visual.ln_post", "vision_model.post_layernorm"),
                         ("ln_final", "text_model.final_layer_norm")):
        state.update({f"{ours}.weight": hf[f"{theirs}.weight"], f"{ours}.bias": hf[f"{theirs}.bias"]})
    for ours, tower, config in (("visual.", "vision_model", model.config.vision_config), ("", "text_model", model.config.text_config)):
        for index in range(config.num_hidden_layers):
            hf_block, block = f"{tower}.encoder.layers.{index}.", f"{ours}transformer.resblocks.{index}."
            for kind in ("weight", "bias"):
                state[f"{block}attn.in_proj_{kind}"] = torch.cat([hf[f"{hf_block}self_attn.{p}_proj.{kind}"] for p in "qkv"])
                for mine, theirs in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                                     ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")):
                    state[f"{block}{mine}.{kind}"] = hf[f"{hf_block}{theirs}.{kind}"]
    return {name: value.clone().contiguous() for name, value in state.items()}


def test_openai_layout_of_a_transformers_clip_converts_back_to_the_same_outputs(tmp_path):
    """Two heads per tower and two layers (the reference fixture has one of each): q/k/v split and block order."""
    common = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2, projection_dim=32)
    torch.manual_seed(0)
    original = CLIPModel(CLIPConfig(text_config=dict(common, vocab_size=300, max_position_embeddings=12,
                                                     bos_token_id=298, eos_token_id=299),
                                    vision_config=dict(common, image_size=32, patch_size=8), projection_dim=32)).eval()
    torch.save(openai_layout_of(original), tmp_path / "clip.pt")
    convert_openai_clip(tmp_path / "clip.pt", tmp_path / "clip")
    converted = CLIPModel.from_pretrained(tmp_path / "clip").eval()
    pixels, ids = torch.randn(3, 3, 32, 32), torch.tensor([[298, 5, 7, 299, 0, 0], [298, 9, 299, 0, 0, 0], [298, 1, 2, 3, 4, 299]])
    with torch.no_grad():
        for method, inputs in (("get_image_features", dict(pixel_values=pixels)), ("get_text_features", dict(input_ids=ids))):
            torch.testing.assert_close(getattr(converted, method)(**inputs).pooler_output,
                                       getattr(original, method)(**inputs).pooler_output, rtol=0, atol=1e-6)
