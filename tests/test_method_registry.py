"""The one list of methods (tireid_hf.methods): what a registered method must come with, and how a
method is registered."""

import sys
from pathlib import Path

import pytest
import yaml

from tireid_hf.hub.catalogue import ZOO_DATASETS
from tireid_hf.methods import card_section_path, method_names, register_method
from tireid_hf.modeling import METHODS, ClipReIDConfig, ClipReIDModel, TIReIDPreTrainedModel

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import zoo  # noqa: E402


def missing_parts(method: str) -> list[str]:
    """What the zoo needs of ``method`` and the repository lacks, each named by its file."""
    missing = []
    if not card_section_path(method).is_file():
        missing.append(f"its model-card section {card_section_path(method)}")
    for dataset in ("synthetic", *ZOO_DATASETS):
        config = REPO / "configs" / f"{method}_{dataset}.yaml"
        if not config.is_file():
            missing.append(f"the training config {config.relative_to(REPO)}")
        elif yaml.safe_load(config.read_text()).get("method") != method:
            missing.append(f"method: {method} in {config.relative_to(REPO)}")
    papers = yaml.safe_load((REPO / "benchmarks" / "papers.yaml").read_text())
    if "backbone" not in papers.get(method, {}):
        missing.append("its entry (with `backbone`) in benchmarks/papers.yaml")
    if method not in zoo.ABLATIONS:
        missing.append("its ablation rows in benchmarks/zoo.py::ABLATIONS")
    return missing


@pytest.mark.parametrize("method", method_names())
def test_every_registered_method_has_what_the_zoo_needs(method):
    assert missing_parts(method) == [], f"method {method!r} lacks: " + "; ".join(missing_parts(method))


def test_a_missing_part_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(zoo, "ABLATIONS", {})
    monkeypatch.setitem(sys.modules["tireid_hf.methods"]._card_sections, "uit", tmp_path / "absent.md")
    assert missing_parts("uit") == [f"its model-card section {tmp_path / 'absent.md'}",
                                    "its ablation rows in benchmarks/zoo.py::ABLATIONS"]


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
