"""CADA: its losses against hand-computed cases, attribute masking, switches, export, re-ranking, learning."""

import math

import pytest
import torch

from tireid_hf.modeling import CADAConfig, CADAModel, losses
from tireid_hf.modeling.modeling_cada import pool_end_of_text, pool_parts
from tireid_hf.processing import CLIP_MASK_TOKEN_ID, clip_tokenizer, mask_attribute_tokens, tag_word_spans
from tester import ModelTester, tiny_clip_config

EPS = 1e-8


# ----------------------------------------------------------------------------- loss functions
def _softmax(row):
    total = sum(math.exp(v) for v in row)
    return [math.exp(v) / total for v in row]


def _reference_ndf(logits_per_text, pids):
    """The reference code's ``ndf_loss`` (LinDixuan/CADA, models/cada.py) in plain python, line by line:
    ``labels = eq(pids) / labels.sum(dim=1)`` (broadcast over the columns); per direction the element-wise
    KL(p||q) + KL(q||p) matrix, plus the scalar ``F.cross_entropy(logits, labels)`` (mean over rows),
    then ``.mean()`` over all N x N entries; ``(loss_i + loss_t) / 2``."""
    n = len(pids)
    same = [[1.0 if pids[i] == pids[j] else 0.0 for j in range(n)] for i in range(n)]
    column_sums = [sum(same[j]) for j in range(n)]
    labels = [[same[i][j] / column_sums[j] for j in range(n)] for i in range(n)]

    def direction(logits):
        p = [_softmax(row) for row in logits]
        cross_entropy = sum(-labels[i][j] * math.log(p[i][j]) for i in range(n) for j in range(n)) / n
        entries = [p[i][j] * (math.log(p[i][j]) - math.log(labels[i][j] + EPS))
                   + labels[i][j] * (math.log(labels[i][j] + EPS) - math.log(p[i][j])) + cross_entropy
                   for i in range(n) for j in range(n)]
        return sum(entries) / (n * n)

    logits_per_image = [[logits_per_text[j][i] for j in range(n)] for i in range(n)]
    return (direction(logits_per_image) + direction(logits_per_text)) / 2


def test_ndf_loss_default_is_the_reference_on_two_distinct_identities():
    # every row and column is (1, 0) with target (1, 0): KL entries sum to kl per row, averaged over N^2 = 4
    # entries (two rows) -> kl / 2; the soft cross-entropy is -log p_right per row, batch mean
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p_right, p_wrong = math.e / (math.e + 1), 1 / (math.e + 1)
    forward_kl = p_right * (math.log(p_right) - math.log(1 + EPS)) + p_wrong * (math.log(p_wrong) - math.log(EPS))
    reverse_kl = math.log(1 + EPS) - math.log(p_right)
    expected = (forward_kl + reverse_kl) / 2 - math.log(p_right)
    assert losses.ndf_loss(logits, torch.tensor([0, 1])).item() == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx(_reference_ndf(logits.tolist(), [0, 1]), rel=1e-12)


@pytest.mark.parametrize("pids", [[0, 1, 2], [4, 4, 9], [0, 1, 0, 1], [3, 3, 3, 5, 7], [1, 2, 2, 1, 1, 6, 8]])
def test_ndf_loss_default_equals_the_reference_formula_with_repeated_identities(pids):
    n = len(pids)
    logits = torch.randn(n, n, generator=torch.Generator().manual_seed(n)) * 3
    expected = _reference_ndf(logits.tolist(), pids)
    assert losses.ndf_loss(logits, torch.tensor(pids)).item() == pytest.approx(expected, rel=1e-5)
    assert losses.ndf_loss(logits, torch.tensor(pids), reduction="reference").item() == pytest.approx(expected, rel=1e-5)


def test_ndf_loss_per_row_distinct_identities_matches_hand_computation():
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p_right, p_wrong = math.e / (math.e + 1), 1 / (math.e + 1)
    forward_kl = p_right * (math.log(p_right) - math.log(1 + EPS)) + p_wrong * (math.log(p_wrong) - math.log(EPS))
    reverse_kl = math.log(1 + EPS) - math.log(p_right)
    cross_entropy = -math.log(p_right)
    expected = forward_kl + reverse_kl + cross_entropy  # every row and column alike; (rows + columns) / 2
    value = losses.ndf_loss(logits, torch.tensor([0, 1]), reduction="per_row").item()
    assert value == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("reduction", ["reference", "per_row"])
def test_ndf_loss_of_a_perfect_shared_identity_prediction_is_the_entropy_of_the_targets(reduction):
    # one identity: q = p = (1/2, 1/2): both KLs vanish, the soft cross-entropy is log 2
    value = losses.ndf_loss(torch.zeros(2, 2), torch.tensor([7, 7]), reduction=reduction).item()
    assert value == pytest.approx(math.log(2), abs=1e-6)


def test_ndf_loss_per_row_averages_rows_and_columns():
    logits = torch.tensor([[2.0, 0.0], [2.0, 0.0]])  # rows differ from columns
    pids = torch.tensor([0, 1])

    def term(row, target):
        p = _softmax(row)
        q = [1.0 if j == target else 0.0 for j in range(len(row))]
        return sum(p[j] * (math.log(p[j]) - math.log(q[j] + EPS)) + q[j] * (math.log(q[j] + EPS) - math.log(p[j]))
                   - q[j] * math.log(p[j]) for j in range(len(row)))

    rows = (term([2.0, 0.0], 0) + term([2.0, 0.0], 1)) / 2
    columns = (term([2.0, 2.0], 0) + term([0.0, 0.0], 1)) / 2
    value = losses.ndf_loss(logits, pids, reduction="per_row").item()
    assert value == pytest.approx((rows + columns) / 2, rel=1e-5)


def test_ndf_loss_refuses_an_unknown_reduction():
    with pytest.raises(ValueError, match=r"reduction must be one of \('reference', 'per_row'\), got 'sum'"):
        losses.ndf_loss(torch.zeros(2, 2), torch.tensor([0, 1]), reduction="sum")


def test_hardest_negatives_skip_same_identity_and_flag_pairs_without_negative():
    similarity = torch.tensor([[0.9, 0.8, 0.1, 0.3],
                               [0.7, 0.9, 0.2, 0.6],
                               [0.5, 0.4, 0.9, 0.2],
                               [0.1, 0.6, 0.0, 0.9]])
    pids = torch.tensor([0, 0, 1, 2])
    image_for_text, text_for_image, has_negative = losses.hardest_negatives(similarity, pids)
    # text 0: images 2 (0.1) or 3 (0.3) -> 3; text 1 -> 3 (0.6); text 2: 0.5 vs 0.4 vs 0.2 -> 0; text 3 -> 1 (0.6)
    assert image_for_text.tolist() == [3, 3, 0, 1]
    # image 0: texts 2 (0.5) / 3 (0.1) -> 2; image 1: 0.4 / 0.6 -> 3; image 2: 0.1, 0.2, 0.0 -> 1; image 3: 0.3, 0.6, 0.2 -> 1
    assert text_for_image.tolist() == [2, 3, 1, 1]
    assert has_negative.all()
    _, _, has_negative = losses.hardest_negatives(similarity, torch.tensor([5, 5, 5, 5]))
    assert not has_negative.any()


def test_matching_loss_matches_hand_computation():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])  # P(match) = 3/4 for both
    value = losses.matching_loss(logits, torch.tensor([1, 0])).item()
    assert value == pytest.approx((-math.log(0.75) - math.log(0.25)) / 2, rel=1e-6)


def test_masked_token_loss_matches_hand_computation_and_is_zero_without_masks():
    logits = torch.tensor([[0.0, 0.0, math.log(2.0)]], requires_grad=True)  # P(2) = 2/4
    assert losses.masked_token_loss(logits, torch.tensor([2])).item() == pytest.approx(math.log(2.0), rel=1e-6)
    empty = losses.masked_token_loss(torch.zeros(0, 5, requires_grad=True), torch.zeros(0, dtype=torch.long))
    assert empty.item() == 0.0 and empty.requires_grad


# ----------------------------------------------------------------------------- pooling
def test_pool_parts_splits_real_words_into_contiguous_parts():
    tokens = torch.arange(8, dtype=torch.float32).view(1, 8, 1).repeat(2, 1, 1)
    # row 0: <start> w w w w w <end> <pad>: 5 words -> parts {1,2,3} and {4,5}; row 1: one word only
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0, 0, 0]])
    parts, valid = pool_parts(tokens, mask, num_parts=2)
    torch.testing.assert_close(parts[0, :, 0], torch.tensor([2.0, 4.5]))
    assert valid.tolist() == [[True, True], [True, False]]
    assert parts[1, 0, 0].item() == 1.0
    torch.testing.assert_close(pool_end_of_text(tokens, mask)[:, 0], torch.tensor([6.0, 2.0]))


# ----------------------------------------------------------------------------- attribute masking
CAPTION = "A young woman wearing a black-and-white striped shirt, and she carries blue jeans."


def _encode(caption):
    encoding = clip_tokenizer()(caption, return_offsets_mapping=True)
    return encoding["input_ids"], encoding["offset_mapping"]


def _masked_words(caption, ids, offsets, labels):
    return {caption[offsets[i][0]:offsets[i][1]] for i, label in enumerate(labels) if label != -100}


def test_mask_attribute_tokens_masks_every_noun_and_adjective_whole_at_probability_one():
    ids, offsets = _encode(CAPTION)
    spans = tag_word_spans(CAPTION)
    masked, labels = mask_attribute_tokens(ids, offsets, spans, 1.0, CLIP_MASK_TOKEN_ID)
    words = {CAPTION[start:end] for start, end, kind in spans if kind in ("noun", "adjective")}
    assert "she" not in words and "wearing" not in words
    positions = [i for i, label in enumerate(labels) if label != -100]
    covered = {CAPTION[s:e] for s, e, kind in spans if kind in ("noun", "adjective")
               for i in positions if offsets[i][0] >= s and offsets[i][1] <= e}
    assert covered == words
    # "black-and-white" is five BPE tokens, all masked; nothing else is
    black_and_white = [i for i, (s, e) in enumerate(offsets) if e > s and s >= CAPTION.index("black") and e <= CAPTION.index(" striped")]
    assert len(black_and_white) == 5 and all(labels[i] == ids[i] for i in black_and_white)
    assert all(masked[i] == CLIP_MASK_TOKEN_ID and labels[i] == ids[i] for i in positions)
    assert all(masked[i] == ids[i] for i in range(len(ids)) if i not in positions)
    assert labels[0] == labels[-1] == -100  # special tokens never


def test_mask_attribute_tokens_probability_zero_and_bad_arguments():
    ids, offsets = _encode(CAPTION)
    spans = tag_word_spans(CAPTION)
    masked, labels = mask_attribute_tokens(ids, offsets, spans, 0.0, CLIP_MASK_TOKEN_ID)
    assert masked == ids and set(labels) == {-100}
    with pytest.raises(ValueError, match="unit"):
        mask_attribute_tokens(ids, offsets, spans, 0.4, CLIP_MASK_TOKEN_ID, unit="sentence")
    with pytest.raises(ValueError, match="probability"):
        mask_attribute_tokens(ids, offsets, spans, 1.5, CLIP_MASK_TOKEN_ID)


def test_phrase_unit_masks_adjective_noun_chunks_together_and_word_unit_does_not():
    ids, offsets = _encode(CAPTION)
    spans = tag_word_spans(CAPTION)
    chunks = [{"young", "woman"}, {"black-and-white", "striped", "shirt"}, {"blue", "jeans"}]
    saw_partial_word_chunk = False
    for seed in range(30):
        for unit in ("phrase", "word"):
            generator = torch.Generator().manual_seed(seed)
            _, labels = mask_attribute_tokens(ids, offsets, spans, 0.5, CLIP_MASK_TOKEN_ID, unit=unit, generator=generator)
            words = {CAPTION[s:e] for s, e, _ in spans if any(labels[i] != -100 and offsets[i][0] >= s and offsets[i][1] <= e
                                                             for i in range(len(ids)))}
            partial = any(0 < len(chunk & words) < len(chunk) for chunk in chunks)
            if unit == "phrase":
                assert not partial, (seed, words)
            else:
                saw_partial_word_chunk |= partial
    assert saw_partial_word_chunk
    # the same generator seed gives the same mask
    first = mask_attribute_tokens(ids, offsets, spans, 0.4, CLIP_MASK_TOKEN_ID, generator=torch.Generator().manual_seed(3))
    again = mask_attribute_tokens(ids, offsets, spans, 0.4, CLIP_MASK_TOKEN_ID, generator=torch.Generator().manual_seed(3))
    assert first == again


# ----------------------------------------------------------------------------- the model
def test_defaults_follow_the_reference_code():
    config = CADAConfig()
    assert (config.temperature, config.global_loss_weight, config.itm_global_loss_weight,
            config.itm_local_loss_weight, config.ara_loss_weight) == (0.02, 1.0, 1.0, 1.0, 0.1)
    assert (config.attribute_mask_probability, config.attribute_mask_unit, config.mask_token_id) == (0.4, "word", 49405)
    assert config.rerank_k == 16 and config.num_local_parts == 2
    assert CADAModel.text_transforms == ("attribute_masking",)
    with pytest.raises(ValueError, match="decoder_num_heads"):
        CADAConfig(clip_config=tiny_clip_config(), decoder_num_heads=5)
    with pytest.raises(ValueError, match="attribute_mask_unit"):
        CADAConfig(attribute_mask_unit="sentence")


def test_losses_total_and_summary_term():
    tester = ModelTester("cada")
    output = tester.model()(**tester.inputs())
    assert set(output.losses) == {"global", "itm", "itm_global", "itm_local", "ara"}
    parts = output.losses
    torch.testing.assert_close(parts["itm"], parts["itm_global"] + parts["itm_local"])
    torch.testing.assert_close(output.loss, parts["global"] + parts["itm_global"] + parts["itm_local"] + 0.1 * parts["ara"])


def test_inference_path_is_the_global_clip_embedding():
    tester = ModelTester("cada")
    model = tester.model().eval()
    inputs = tester.inputs()
    with torch.no_grad():
        images = torch.nn.functional.normalize(model.encode_image(inputs["pixel_values"]).global_features, dim=-1)
        texts = torch.nn.functional.normalize(
            model.encode_text(inputs["input_ids"], inputs["attention_mask"]).global_features, dim=-1)
        torch.testing.assert_close(model.get_image_features(inputs["pixel_values"]), images)
        torch.testing.assert_close(model.get_text_features(inputs["input_ids"], inputs["attention_mask"]), texts)


@pytest.mark.parametrize("switched_off, gone_losses, gone_modules", [
    ({"itm_local_loss_weight": 0.0}, {"itm_local"}, {"itm_local_head"}),
    ({"itm_global_loss_weight": 0.0}, {"itm_global"}, {"itm_head"}),
    ({"ara_loss_weight": 0.0}, {"ara"}, {"mlm_head"}),
    ({"global_loss_weight": 0.0}, {"global"}, set()),
    ({"itm_local_loss_weight": 0.0, "itm_global_loss_weight": 0.0, "ara_loss_weight": 0.0},
     {"itm", "itm_global", "itm_local", "ara"}, {"itm_head", "itm_local_head", "mlm_head", "decoder", "decoder_norm"}),
])
def test_switching_a_component_off_removes_its_loss_and_module(switched_off, gone_losses, gone_modules):
    tester = ModelTester("cada", **switched_off)
    model = tester.model()
    output = model(**tester.inputs())
    assert set(output.losses) == {"global", "itm", "itm_global", "itm_local", "ara"} - gone_losses
    assert all(getattr(model, name) is None for name in gone_modules)
    output.loss.backward()


def test_ara_without_masked_inputs_is_an_error_and_shapes_are_checked():
    tester = ModelTester("cada")
    model = tester.model()
    inputs = tester.inputs()
    masked = {key: inputs.pop(key) for key in ("masked_input_ids", "masked_labels")}
    with pytest.raises(ValueError, match="masked_input_ids"):
        model(**inputs)
    with pytest.raises(ValueError, match="masked_labels must have the shape"):
        model(**inputs, masked_input_ids=masked["masked_input_ids"], masked_labels=masked["masked_labels"][:, :3])
    ModelTester("cada", ara_loss_weight=0.0).model()(**inputs)  # ARA off: no masked inputs needed


def test_export_keeps_the_matching_path_and_drops_training_heads(tmp_path):
    tester = ModelTester("cada")
    model = tester.model().eval()
    exported = model.export_for_inference()
    assert exported.mlm_head is None and exported.itm_local_head is None
    assert exported.decoder is not None and exported.itm_head is not None
    inputs = tester.inputs()
    with torch.no_grad():
        expected = model.rerank_scores(inputs["input_ids"][:1], inputs["attention_mask"][:1], inputs["pixel_values"])
        torch.testing.assert_close(exported.rerank_scores(inputs["input_ids"][:1], inputs["attention_mask"][:1],
                                                          inputs["pixel_values"]), expected, rtol=0, atol=0)
    assert expected.shape == (tester.batch_size,) and ((expected > 0) & (expected < 1)).all()


def test_rerank_scores_is_the_match_probability_of_the_decoded_pair():
    tester = ModelTester("cada")
    model = tester.model().eval()
    inputs = tester.inputs()
    ids, mask, pixels = inputs["input_ids"][2:3], inputs["attention_mask"][2:3], inputs["pixel_values"]
    with torch.no_grad():
        scores = model.rerank_scores(ids, mask, pixels)
        text = model.encode_text(ids, mask, return_tokens=True).token_features
        for k in range(pixels.shape[0]):
            image = model.encode_image(pixels[k:k + 1], return_tokens=True).token_features
            logits = model.itm_head(pool_end_of_text(model.decode(text, mask, image), mask))
            assert scores[k].item() == pytest.approx(logits.softmax(-1)[0, 1].item(), abs=1e-6)
    with pytest.raises(ValueError, match=r"\[1, length\]"):
        model.rerank_scores(inputs["input_ids"], inputs["attention_mask"], pixels)
    with pytest.raises(ValueError, match="itm_global_loss_weight=0"):
        ModelTester("cada", itm_global_loss_weight=0.0).model().rerank_scores(ids, mask, pixels)


def test_short_training_run_learns_every_term_and_the_batch_retrieval():
    tester = ModelTester("cada", num_ids=4, decoder_layers=2)
    model = tester.model(seed=1)
    inputs = tester.inputs(seed=1)
    inputs["pids"] = torch.arange(4)  # four identities: every pair has hard negatives
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    first = None
    for _ in range(40):
        output = model(**inputs)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        first = first if first is not None else (output.loss.item(), {k: v.item() for k, v in output.losses.items()})
    with torch.no_grad():
        final = model(**inputs)
    assert final.loss.item() < 0.5 * first[0]
    for name in ("global", "itm_global", "itm_local", "ara"):
        assert final.losses[name].item() < 0.8 * first[1][name], (name, first[1][name], final.losses[name].item())
    assert torch.equal(final.logits_per_text.argmax(dim=1), torch.arange(4))


def test_without_its_matching_head_cada_says_it_cannot_rerank_and_training_skips_the_rerank():
    from tireid_hf.retrieval import supports_rerank

    model = ModelTester("cada", itm_global_loss_weight=0.0, itm_local_loss_weight=0.0).model()
    assert not model.can_rerank and not supports_rerank(model)
    assert supports_rerank(ModelTester("cada").model())


def test_matching_head_learns_above_its_prior_over_the_pretrained_base():
    """Over informative tokens (the committed base, frozen) the decoder + ``itm_head`` learn to tell a
    caption's own image from another identity's: held-out accuracy well above the 0.5 of a balanced
    prior."""
    from pathlib import Path

    from tireid_hf.data import load_tireid_dataset
    from tireid_hf.processing import TIReIDProcessor

    torch.manual_seed(0)
    base = Path(__file__).resolve().parent.parent / "bases" / "clip-synthetic"
    model = CADAModel.from_clip(base, image_size=(96, 32), decoder_layers=2, decoder_num_heads=4, num_ids=1)
    processor = TIReIDProcessor.for_image_size((96, 32))
    data = load_tireid_dataset("synthetic", num_train_ids=300, num_validation_ids=50, num_test_ids=1, images_per_id=2)

    def tokens(split):
        rows = data[split]
        pixels = processor(images=list(rows["image"]), return_tensors="pt")["pixel_values"]
        text = processor(text=[c[0] for c in rows["captions"]], return_tensors="pt", padding=True)
        with torch.no_grad():
            return (model.encode_image(pixels, return_tokens=True).token_features,
                    model.encode_text(text["input_ids"], text["attention_mask"], return_tokens=True).token_features,
                    text["attention_mask"], torch.tensor(rows["pid"]))

    def pairs(split_tokens, rows, generator):
        images, texts, mask, pids = split_tokens
        other = (rows + torch.randint(1, len(pids), rows.shape, generator=generator)) % len(pids)
        other = torch.where(pids[other] == pids[rows], (other + 2) % len(pids), other)  # 2 images per identity
        text_rows, image_rows = torch.cat([rows, rows]), torch.cat([rows, other])
        labels = torch.cat([torch.ones_like(rows), torch.zeros_like(rows)])
        decoded = model.decode(texts[text_rows], mask[text_rows], images[image_rows])
        return model.itm_head(pool_end_of_text(decoded, mask[text_rows])), labels

    train, held_out = tokens("train"), tokens("validation")
    heads = [*model.decoder.parameters(), *model.decoder_norm.parameters(), *model.itm_head.parameters()]
    optimizer = torch.optim.Adam(heads, lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        logits, labels = pairs(train, torch.randint(len(train[3]), (32,), generator=generator), generator)
        loss = losses.matching_loss(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        logits, labels = pairs(held_out, torch.arange(len(held_out[3])), generator)
    accuracy = (logits.argmax(dim=-1) == labels).float().mean().item()
    assert accuracy > 0.7, f"held-out matching accuracy {accuracy:.3f} (prior 0.5)"


# ----------------------------------------------------------------------------- ablation rows and baseline terms
def test_ndf_reduction_reaches_the_global_term_and_unknown_values_are_refused():
    inputs = ModelTester("cada").inputs()
    values = {}
    for reduction in ("reference", "per_row"):
        tester = ModelTester("cada", ndf_reduction=reduction, itm_global_loss_weight=0.0, itm_local_loss_weight=0.0,
                             ara_loss_weight=0.0)
        output = tester.model()(**inputs)
        values[reduction] = output.losses["global"].item()
        expected = _reference_ndf(output.logits_per_text.tolist(), inputs["pids"].tolist()) if reduction == "reference" \
            else losses.ndf_loss(output.logits_per_text, inputs["pids"], reduction="per_row").item()
        assert values[reduction] == pytest.approx(expected, rel=1e-5)
    assert values["reference"] != pytest.approx(values["per_row"], rel=1e-3)
    assert CADAConfig().ndf_reduction == "reference"
    with pytest.raises(ValueError, match="ndf_reduction must be one of"):
        CADAConfig(ndf_reduction="sum")


def test_baseline_terms_on_cadas_embedding_equal_the_baselines_own():
    from tireid_hf.modeling import ClipReIDModel

    tester = ModelTester("cada", **CADAConfig.zoo_ablations["none of its additions"])
    cada = tester.model()
    baseline = ModelTester("clip_reid").model(seed=1)
    baseline.load_state_dict(cada.state_dict(), strict=True)  # the same CLIP and ID classifier
    assert isinstance(baseline, ClipReIDModel)
    inputs = tester.inputs()
    ours, theirs = cada(**inputs), baseline(**inputs)
    assert set(ours.losses) == {"sdm", "id"}
    for name in ("sdm", "id"):
        torch.testing.assert_close(ours.losses[name], theirs.losses[name], rtol=0, atol=0)
    torch.testing.assert_close(ours.loss, theirs.loss, rtol=0, atol=0)
    assert CADAConfig().sdm_loss_weight == CADAConfig().id_loss_weight == 0.0
    assert ModelTester("cada").model().id_classifier is None


def test_none_of_its_additions_builds_no_cada_module_and_computes_no_ndf(monkeypatch):
    import tireid_hf.modeling.modeling_cada as modeling_cada

    def no_ndf(*args, **kwargs):
        raise AssertionError("ndf_loss computed with global_loss_weight 0")

    monkeypatch.setattr(modeling_cada, "ndf_loss", no_ndf)
    tester = ModelTester("cada", **CADAConfig.zoo_ablations["none of its additions"])
    model = tester.model()
    assert all(getattr(model, name) is None
               for name in ("decoder", "decoder_norm", "itm_head", "itm_local_head", "mlm_head"))
    new_modules = {name.split(".")[0] for name, _ in model.named_parameters()} - {"clip"}
    assert new_modules == {"id_classifier"}
    inputs = tester.inputs()
    inputs.pop("masked_input_ids"), inputs.pop("masked_labels")
    assert set(model(**inputs).losses) == {"sdm", "id"}


@pytest.mark.parametrize("row, expected_losses", [
    ("none of its additions", {"sdm", "id"}),
    ("no ATP and ARA", {"global"}),
    ("no ATP and ARA, per-row NDF", {"global"}),
])
def test_ablation_rows_build_train_a_step_and_round_trip(tmp_path, row, expected_losses):
    tester = ModelTester("cada", **CADAConfig.zoo_ablations[row])
    model = tester.model()
    inputs = tester.inputs()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    output = model(**inputs)
    assert set(output.losses) == expected_losses
    optimizer.zero_grad()
    output.loss.backward()
    optimizer.step()
    model.eval()
    model.save_pretrained(tmp_path)
    loaded = CADAModel.from_pretrained(tmp_path).eval()
    assert {field: getattr(loaded.config, field) for field in CADAConfig.zoo_ablations[row]} == \
        CADAConfig.zoo_ablations[row]
    assert loaded.state_dict().keys() == model.state_dict().keys()
    with torch.no_grad():
        before, after = model(**inputs), loaded(**inputs)
    assert set(after.losses) == expected_losses
    for name in expected_losses:
        torch.testing.assert_close(after.losses[name], before.losses[name])


def test_the_contribution_row_removes_matching_and_ara_and_keeps_the_reference_ndf():
    row = CADAConfig.zoo_ablations[CADAConfig.zoo_contribution]
    assert CADAConfig.zoo_contribution == "no ATP and ARA"
    config = ModelTester("cada", **row).config()
    assert (config.itm_global_loss_weight, config.itm_local_loss_weight, config.ara_loss_weight) == (0.0, 0.0, 0.0)
    assert (config.global_loss_weight, config.ndf_reduction, config.sdm_loss_weight, config.id_loss_weight) == \
        (1.0, "reference", 0.0, 0.0)
    assert CADAConfig.zoo_ablations["no ATP and ARA, per-row NDF"] == {**row, "ndf_reduction": "per_row"}


def test_hard_negatives_are_mined_from_the_unnormalised_global_features(monkeypatch):
    import tireid_hf.modeling.modeling_cada as modeling_cada

    seen = []

    def recording(similarity, pids):
        seen.append(similarity.detach().clone())
        return losses.hardest_negatives(similarity, pids)

    monkeypatch.setattr(modeling_cada, "hardest_negatives", recording)
    tester = ModelTester("cada")
    model = tester.model()
    inputs = tester.inputs()
    model(**inputs)
    with torch.no_grad():
        images = model.encode_image(inputs["pixel_values"]).global_features
        texts = model.encode_text(inputs["input_ids"], inputs["attention_mask"]).global_features
    assert images.norm(dim=-1).std() > 0  # the features are not unit vectors: dot product != cosine
    torch.testing.assert_close(seen[0], texts @ images.t())
