"""Every figure of RESULTS.md's generated block and the README's zoo table is rendered from the report's
committed JSON (benchmarks/report_text.py ``DOCUMENTS``): re-rendering them gives the committed text exactly."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import report_text  # noqa: E402


def committed_block(path: Path, markers: tuple[str, str]) -> str:
    text = path.read_text()
    return text[text.index(markers[0]) + len(markers[0]) + 1:text.index(markers[1]) - 1]


def test_results_block_and_readme_table_are_the_rendering_of_the_committed_json():
    block, table = report_text.render(report_text.load_documents())
    assert committed_block(REPO / "benchmarks" / "RESULTS.md", report_text.MARKERS["results"]) == block
    assert committed_block(REPO / "README.md", report_text.MARKERS["readme"]) == table


def test_the_rendered_figures_follow_the_json():
    documents = report_text.load_documents()
    block, table = report_text.render(documents)
    row = documents["comparison"]["rows"]["cada"]
    row["R1"] = [row["R1"][0] + 11.111, row["R1"][1]]
    edited_block, edited_table = report_text.render(documents)
    assert f"{row['R1'][0]:.2f} ± {row['R1'][1]:.2f}" in edited_block and edited_block != block
    assert f"{row['R1'][0]:.2f} ± {row['R1'][1]:.2f}" in edited_table and edited_table != table
