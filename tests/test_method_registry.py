"""The one list of methods (tireid_hf.methods): what a registered method must come with for every
table `make report` and `make cards` index by method, and how a method is registered."""

import sys
from pathlib import Path

import pytest
import yaml

from tireid_hf.hub.catalogue import ZOO_DATASETS
from tireid_hf.methods import card_section_path, method_classes, method_names, register_method
from tireid_hf.modeling import METHODS, ClipReIDConfig, ClipReIDModel, TIReIDPreTrainedModel, UITConfig

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import zoo  # noqa: E402


def missing_parts(method: str) -> list[str]:
    """What the zoo needs of ``method`` and the repository lacks, each named by its file: the card
    section (`tireid cards`), a training config per dataset (training, the report's links, the cards),
    and its config class's zoo facts (``zoo_ablations``: the ablation phase; ``zoo_sweep``: the sweep,
    also set in its synthetic config; ``zoo_reported``: the README table and the cards)."""
    missing = []
    if not card_section_path(method).is_file():
        missing.append(f"its model-card section {card_section_path(method)}")
    for dataset in ("synthetic", *ZOO_DATASETS):
        config = REPO / "configs" / f"{method}_{dataset}.yaml"
        if not config.is_file():
            missing.append(f"the training config {config.relative_to(REPO)}")
        elif yaml.safe_load(config.read_text()).get("method") != method:
            missing.append(f"method: {method} in {config.relative_to(REPO)}")
    config_class = method_classes(method)[0]
    where = f"{config_class.__name__} ({Path(sys.modules[config_class.__module__].__file__).name})"
    fields = set(config_class.__dataclass_fields__)
    ablations = config_class.zoo_ablations
    if not ablations or not all(overrides for overrides in ablations.values()):
        missing.append(f"its ablation rows, `zoo_ablations`, in {where}")
    elif not all(set(overrides) - {"method"} <= set(method_classes(overrides.get("method", method))[0].__dataclass_fields__)
                 for overrides in ablations.values()):
        missing.append(f"`zoo_ablations` of {where} naming only fields of the config each row trains")
    if method != zoo.BASELINE and "none of its additions" not in ablations:
        missing.append(f"the row `none of its additions` in `zoo_ablations` of {where}")
    if method != zoo.BASELINE and config_class.zoo_contribution not in ablations:
        missing.append(f"`zoo_contribution` of {where} naming the row that removes the paper's contribution")
    try:
        settings = zoo.sweep_settings(method)
        if (REPO / "configs" / f"{method}_synthetic.yaml").is_file() and zoo.chosen_setting(method) not in settings:
            missing.append(f"one of its sweep settings {[s[0] for s in settings]} in configs/{method}_synthetic.yaml")
    except ValueError as error:
        missing.append(f"its sweep knobs, `zoo_sweep`, in {where}: {error}")
    reported = config_class.zoo_reported
    if "backbone" not in reported or not set(reported) <= {"backbone", *ZOO_DATASETS}:
        missing.append(f"its paper's reported figures, `zoo_reported` (with `backbone`), in {where}")
    return missing


@pytest.mark.parametrize("method", method_names())
def test_every_registered_method_has_what_the_zoo_needs(method):
    assert missing_parts(method) == [], f"method {method!r} lacks: " + "; ".join(missing_parts(method))


def test_a_missing_part_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(UITConfig, "zoo_ablations", {})
    monkeypatch.setattr(UITConfig, "zoo_sweep", ("no_such_field",))
    monkeypatch.setattr(UITConfig, "zoo_reported", {"cuhk-pedes": "1 / 2"})
    monkeypatch.setitem(sys.modules["tireid_hf.methods"]._card_sections, "uit", tmp_path / "absent.md")
    assert missing_parts("uit") == [
        f"its model-card section {tmp_path / 'absent.md'}",
        "its ablation rows, `zoo_ablations`, in UITConfig (configuration_uit.py)",
        "the row `none of its additions` in `zoo_ablations` of UITConfig (configuration_uit.py)",
        "`zoo_contribution` of UITConfig (configuration_uit.py) naming the row that removes the paper's contribution",
        "its sweep knobs, `zoo_sweep`, in UITConfig (configuration_uit.py): UITConfig.zoo_sweep must name fields "
        "of the config, got ('no_such_field',)",
        "its paper's reported figures, `zoo_reported` (with `backbone`), in UITConfig (configuration_uit.py)"]
    monkeypatch.setattr(UITConfig, "zoo_ablations", {"none of its additions": {"triplet_weight": 0.0}})
    monkeypatch.setattr(UITConfig, "zoo_contribution", "none of its additions")
    monkeypatch.setattr(UITConfig, "zoo_sweep", ("tir_decoder_mlp_ratio",))  # a field its synthetic config leaves unset
    assert missing_parts("uit")[1:3] == [
        "`zoo_ablations` of UITConfig (configuration_uit.py) naming only fields of the config each row trains",
        "its sweep knobs, `zoo_sweep`, in UITConfig (configuration_uit.py): configs/uit_synthetic.yaml: the sweep's "
        "keys ('tir_decoder_mlp_ratio',) must all be set to one value"]


def test_the_sweep_tries_the_papers_weight_and_half_of_it_and_refuses_knobs_with_different_defaults(monkeypatch):
    assert zoo.sweep_weights("uit") == (10.0, 5.0) and zoo.sweep_weights("cada") == (1.0, 0.5)
    monkeypatch.setattr(UITConfig, "zoo_sweep", ("tir_loss_weight", "id_loss_weight"))
    with pytest.raises(ValueError, match=r"the defaults of \('tir_loss_weight', 'id_loss_weight'\) differ"):
        zoo.sweep_weights("uit")


def test_the_zoo_facts_are_not_saved_in_config_json():
    saved = UITConfig().to_dict()
    assert UITConfig.zoo_ablations and not {"zoo_ablations", "zoo_sweep", "zoo_reported"} & set(saved)


def test_enumerations_follow_the_registry():
    assert method_names() == list(METHODS) == list(zoo.METHODS)
    assert method_names()[0] == "clip_reid"  # the baseline row comes first in every table


def test_register_method_refuses_what_breaks_the_contract(tmp_path):
    class NoLosses(TIReIDPreTrainedModel):
        config_class = ClipReIDConfig

    with pytest.raises(ValueError, match="model_type must be 'tireid-other'"):
        register_method("other", ClipReIDConfig, ClipReIDModel)
    with pytest.raises(ValueError, match="must implement compute_losses"):
        register_method("clip_reid", ClipReIDConfig, NoLosses)
    with pytest.raises(TypeError, match="must subclass TIReIDPreTrainedModel"):
        register_method("clip_reid", ClipReIDConfig, object)
    with pytest.raises(FileNotFoundError, match="model-card section"):
        register_method("clip_reid", ClipReIDConfig, ClipReIDModel, card_section=tmp_path / "none.md")
    assert METHODS["clip_reid"] == (ClipReIDConfig, ClipReIDModel)
