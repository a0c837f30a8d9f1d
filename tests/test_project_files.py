"""The files a user checks first: the licence, the citation, the changelog, and one version."""

import configparser
import importlib.metadata
import re
from pathlib import Path

import yaml

import tireid_hf

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_lives_in_the_package_only():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config["metadata"]["version"] == "attr: tireid_hf.__version__"
    assert importlib.metadata.version("tireid-hf") == tireid_hf.__version__


def test_the_changelog_names_the_current_version():
    released = re.findall(r"^## \[(\d[^\]]*)\]", (ROOT / "CHANGELOG.md").read_text(), flags=re.M)
    assert released[0] == tireid_hf.__version__


def test_the_licence_is_setup_cfgs_with_the_vocabularys_notice():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config["metadata"]["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert text.split("\n")[0].strip() == "Apache License" and "Version 2.0, January 2004" in text
    vocabulary_notice = (ROOT / "src/tireid_hf/clip_vocabulary/LICENSE").read_text()
    assert text.endswith(vocabulary_notice)


def test_the_citation_cites_the_project_and_every_methods_paper():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["type"] == "software"
    assert citation["license"] == "Apache-2.0" and "version" not in citation  # the version lives in the package
    titles = {reference["title"] for reference in citation["references"]}
    assert {
        "Cross-Modal Implicit Relation Reasoning and Aligning for Text-to-Image Person Retrieval",
        "Learning Comprehensive Representations with Richer Self for Text-to-Image Person Re-Identification",
        "Cross-Modal Adaptive Dual Association for Text-to-Image Person Retrieval",
        "Learning Granularity-Unified Representations for Text-to-Image Person Re-identification",
        "Unleashing the Imagination of Text: A Novel Framework for Text-to-image Person Retrieval via "
        "Exploring the Power of Words",
    } <= titles
    for reference in citation["references"]:
        assert reference["authors"] and reference["year"], reference["title"]
