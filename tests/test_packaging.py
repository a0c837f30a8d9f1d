"""The built wheel carries every non-Python file the package reads at run time (card templates, the
metric module, the CLIP vocabulary the tokenizer is built from)."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "tireid_hf"


@pytest.mark.slow
def test_the_wheel_ships_the_card_templates_the_metric_module_and_the_clip_vocabulary(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path / "wheel"), str(source)], check=True)
    wheel, = (tmp_path / "wheel").glob("tireid_hf-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    data_files = [path for folder in ("hub/cards", "metrics/tireid_retrieval") for path in (PACKAGE / folder).rglob("*")
                  if path.is_file() and path.suffix in (".md", ".py")]
    data_files += sorted((PACKAGE / "clip_vocabulary").iterdir())  # the tokenizer's merges, licence and note
    assert any(path.name.endswith(".txt.gz") for path in data_files)
    assert len([path for path in data_files if path.parent.name == "methods"]) == 5  # one card section per method
    missing = [str(path.relative_to(PACKAGE.parent)) for path in data_files
               if str(path.relative_to(PACKAGE.parent)) not in shipped]
    assert not missing, f"not in the wheel: {missing}"
