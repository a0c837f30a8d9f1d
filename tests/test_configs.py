"""The synthetic configs are ONE protocol: only the method's own settings and its head multiplier differ."""

from pathlib import Path

import pytest
import yaml

from tireid_hf.modeling import METHODS

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted((REPO / "configs").glob("*_synthetic.yaml"))
# what a method may set differently from the others (its budget is checked in epochs x stages)
METHOD_OWN = {"method", "model_config", "head_learning_rate_multiplier", "num_train_epochs"}


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _stages(config: dict) -> int:
    """Training stages the method runs from this config (LCR2S's two-stage schedule: 2)."""
    method_config = METHODS[config["method"]][0](**{k: v for k, v in config["model_config"].items() if k != "image_size"})
    return len(getattr(method_config, "stages", ("main",)))


def test_every_method_has_a_synthetic_config():
    assert {_load(path)["method"] for path in CONFIGS} == set(METHODS)


def test_synthetic_configs_share_one_protocol():
    configs = {path.name: _load(path) for path in CONFIGS}
    reference_name, reference = next(iter(configs.items()))
    shared = {key: value for key, value in reference.items() if key not in METHOD_OWN}
    for name, config in configs.items():
        protocol = {key: value for key, value in config.items() if key not in METHOD_OWN}
        assert protocol == shared, f"{name} departs from {reference_name}'s protocol in " + str(
            sorted(key for key in protocol.keys() | shared.keys() if protocol.get(key) != shared.get(key)))
        assert config["model_config"]["image_size"] == reference["model_config"]["image_size"], name
        assert "clip_config" not in config["model_config"], f"{name}: the architecture comes from the base"
    budgets = {name: config["num_train_epochs"] * _stages(config) for name, config in configs.items()}
    assert len(set(budgets.values())) == 1, f"epoch budgets (epochs x stages) differ: {budgets}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_synthetic_configs_start_from_the_committed_base(path):
    base = _load(path)["clip_name_or_path"]
    assert base == "bases/clip-synthetic" and (REPO / base / "model.safetensors").is_file()
