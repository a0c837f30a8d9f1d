"""README's "Contributing a method" lists every place an in-tree method takes: a toy method written at
exactly those places, in a copy of the repository, passes the registry and config tests, renders its
model cards and fills the report's tables; with any one place left out, a named check fails."""

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from test_new_method import CARD_SECTION, MODELING_TOY
from tireid_hf.hub.catalogue import ZOO_DATASETS

REPO = Path(__file__).resolve().parents[1]
CONFIGURATION_TOY = '''
from .configuration_tireid import TIReIDConfig


class ToyConfig(TIReIDConfig):
    """CLIP + a linear text head, trained with SDM."""

    model_type = "tireid-toy"
    zoo_ablations = {"none of its additions": {"id_loss_weight": 0.0}}
    zoo_contribution = "none of its additions"
    zoo_sweep = ("id_loss_weight",)
    zoo_reported = {"backbone": "TOY-BACKBONE", "cuhk-pedes": "1.00 / 2.00"}

    sdm_loss_weight: float = 1.0
    id_loss_weight: float = 1.0


ToyConfig.register_for_auto_class()
'''
# What the copy runs once the toy is in place: the report's tables over every method on fake runs and
# `tireid cards`; collected with the copy's registry and config tests.
CHECK_TOY = '''
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import report_text  # noqa: E402
import zoo  # noqa: E402
from tireid_hf.cli import main as tireid  # noqa: E402


def test_the_report_and_the_cards_take_the_toy(tmp_path):
    assert "toy" in zoo.METHODS
    row = {key: (20.0, 1.0) for key in zoo.KEYS} | {"train_minutes": 1.0, "runs": 3}
    comparison = {"rows": {method: dict(row) for method in zoo.METHODS}, "reranked": {}, "differences": {}}
    toy = next(line for line in report_text.readme_table(comparison).splitlines() if line.startswith("| `toy` |"))
    assert "| TOY-BACKBONE | 1.00 / 2.00 · [yaml](configs/toy_cuhk-pedes.yaml) | — · [yaml]" in toy
    settings = zoo.sweep_settings("toy")
    sweep_rows = [{"setting": label, "head_learning_rate_multiplier": m, "weight": w, "validation_R1": 1.0,
                   "validation_mAP": 1.0} for label, m, w in settings]
    assert "| toy | `id_loss_weight` |" in zoo.sweep_table({"rows": {"toy": sweep_rows}, "chosen": {"toy": sweep_rows[0]}})
    assert [job[2] for _, job in zoo.ablation_jobs(["toy"], 0)][1:] == ["none of its additions"]
    assert tireid(["cards", "--out", str(tmp_path / "cards")]) == 0
    assert "TOY-BACKBONE" in (tmp_path / "cards" / "toy-cuhk-pedes" / "README.md").read_text()
'''


def readme_places() -> list[str]:
    """The places README's "Contributing a method" section lists (its numbered items' first path)."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Contributing a method\n"):]
    section = section[:section.index("\n## ", 1)] if "\n## " in section[1:] else section
    return re.findall(r"(?m)^\d+\. `([^`]+)`", section)


def write_toy_config(root: Path, dataset: str) -> None:
    text = (root / "configs" / f"clip_reid_{dataset}.yaml").read_text()
    (root / "configs" / f"toy_{dataset}.yaml").write_text(text.replace("method: clip_reid", "method: toy"))


def add_to_methods(root: Path) -> None:
    path = root / "src" / "tireid_hf" / "modeling" / "__init__.py"
    text = path.read_text().replace('from .modeling_uit import UITModel\n', 'from .modeling_uit import UITModel\n'
                                    'from .configuration_toy import ToyConfig\nfrom .modeling_toy import ToyModel\n')
    path.write_text(text.replace('    "uit": (UITConfig, UITModel),\n',
                                 '    "uit": (UITConfig, UITModel),\n    "toy": (ToyConfig, ToyModel),\n'))


# README place -> (how the toy takes it, what the checks print when it is left out)
PLACES = {
    "src/tireid_hf/modeling/configuration_<m>.py": (
        lambda root: (root / "src/tireid_hf/modeling/configuration_toy.py").write_text(textwrap.dedent(CONFIGURATION_TOY)),
        "No module named 'tireid_hf.modeling.configuration_toy'"),
    "src/tireid_hf/modeling/modeling_<m>.py": (
        lambda root: (root / "src/tireid_hf/modeling/modeling_toy.py").write_text(textwrap.dedent(MODELING_TOY)),
        "No module named 'tireid_hf.modeling.modeling_toy'"),
    "src/tireid_hf/hub/cards/methods/<m>.md": (
        lambda root: (root / "src/tireid_hf/hub/cards/methods/toy.md").write_text(CARD_SECTION),
        "the model-card section"),
    "src/tireid_hf/modeling/__init__.py": (add_to_methods, "FAILED tests/test_configs.py::test_every_method_has_a_synthetic_config"),
    "configs/<m>_<dataset>.yaml": (
        lambda root: [write_toy_config(root, dataset) for dataset in ("synthetic", *ZOO_DATASETS)],
        "the training config configs/toy_synthetic.yaml"),
}


def repository_with_toy(root: Path, places) -> Path:
    """A copy of what the checks read (package, configs, benchmarks' scripts, the tests run; the
    committed base linked), with the toy written at ``places``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "src", root / "src", ignore=ignore)
    shutil.copytree(REPO / "configs", root / "configs")
    (root / "benchmarks").mkdir()
    for name in ("zoo.py", "report_text.py", "bench_training.py", "bench_inference.py"):
        shutil.copy(REPO / "benchmarks" / name, root / "benchmarks" / name)
    (root / "tests").mkdir()
    for name in ("conftest.py", "test_method_registry.py", "test_configs.py"):
        shutil.copy(REPO / "tests" / name, root / "tests" / name)
    (root / "tests" / "test_toy_in_the_zoo.py").write_text(CHECK_TOY)
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    (root / "bases").symlink_to(REPO / "bases")
    for place in places:
        PLACES[place][0](root)
    return root


def run_checks(root: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(root / "src"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=root,
                          env=environment, capture_output=True, text=True)


def test_the_readme_lists_the_places_a_toy_takes():
    assert readme_places() == list(PLACES)


@pytest.mark.slow
def test_a_toy_at_the_listed_places_passes_the_registry_configs_cards_and_report(tmp_path):
    completed = run_checks(repository_with_toy(tmp_path, PLACES))
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("left_out", list(PLACES))
def test_leaving_out_any_listed_place_fails_a_named_check(tmp_path, left_out):
    completed = run_checks(repository_with_toy(tmp_path, [place for place in PLACES if place != left_out]))
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0 and PLACES[left_out][1] in output, output[-3000:]
