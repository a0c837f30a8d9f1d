"""README's "Your own data" section, run as written: every line of its bash block, in a folder holding
generated photos in the layouts it describes, and its Python block in a process where tireid_hf cannot be
imported. The one path the README cannot know, the CUHK-PEDES release (/data/CUHK-PEDES), is the synthetic
set exported in that format."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import run_without_tireid_hf
from tireid_hf.data import load_tireid_dataset
from tireid_hf.data.synthetic import export_cuhk_format

REPO = Path(__file__).resolve().parents[1]
RAW_RELEASE = "/data/CUHK-PEDES"
# 40 identities x 2 photos: carved 32 / 4 / 4, so the protocol config's P x K = 32 x 2 batch fits the training split
PHOTOS = dict(num_train_ids=40, num_validation_ids=1, num_test_ids=8, images_per_id=2, image_height=96, image_width=32,
              seed=5)


def readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    return text[start:text.index("\n## ", start + 1)]


def code_blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def write_jpegs(folder: Path, rows, metadata: bool) -> None:
    folder.mkdir()
    lines = []
    for index, row in enumerate(rows):
        name = f"{index:04d}.jpg"
        row["image"].save(folder / name, quality=95)
        lines.append(json.dumps({"file_name": name, "captions": row["captions"], "pid": row["pid"]}) + "\n")
    if metadata:
        (folder / "metadata.jsonl").write_text("".join(lines))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A user's folder: the repository's train.py, configs/ and bases/, their captioned photos (my_photos/),
    a folder of other photos (street_photos/) and the raw release, all before any README command ran."""
    folder = tmp_path_factory.mktemp("user")
    for name in ("train.py", "configs", "bases"):
        (folder / name).symlink_to(REPO / name)
    photos = load_tireid_dataset("synthetic", **PHOTOS)
    write_jpegs(folder / "my_photos", photos["train"], metadata=True)
    write_jpegs(folder / "street_photos", photos["test"], metadata=False)
    export_cuhk_format(folder / "raw-cuhk", num_train_ids=4, num_validation_ids=2, num_test_ids=3, images_per_id=2,
                       image_height=96, image_width=32, seed=6)
    return folder


@pytest.fixture(scope="module")
def ran(workdir):
    """Each line of the section's bash block, run by bash in ``workdir``: ``{line: completed process}``."""
    [block] = code_blocks(readme_section("Your own data"), "bash")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1"}
    results = {}
    for line in block.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        command = line.replace(RAW_RELEASE, str(workdir / "raw-cuhk"))
        results[line] = completed = subprocess.run(["bash", "-c", command], cwd=workdir, env=env, capture_output=True,
                                                   text=True)
        assert completed.returncode == 0, f"{line}\n{completed.stderr[-3000:]}"
    return results


@pytest.mark.slow
def test_every_command_of_the_section_runs_and_trains_a_model_with_a_threshold(ran, workdir):
    model = workdir / "out" / "my-model"
    results = json.loads((model / "results.json").read_text())
    config = json.loads((model / "config.json").read_text())
    assert results["threshold_split"] == "validation" and results["threshold_fpr"] == 1e-3
    assert config["score_threshold"] == results["score_threshold"]
    assert len(ran) == 6  # train, evaluate x 2, search x 2, prepare: a README line that does not run fails above


@pytest.mark.slow
def test_the_search_writes_the_top_k_above_the_threshold_and_none_ranks_everything(ran, workdir):
    threshold = json.loads((workdir / "out" / "my-model" / "config.json").read_text())["score_threshold"]
    report = json.loads((workdir / "ranked.json").read_text())
    [query] = report["queries"]
    assert query["text"] == "a man in a red jacket" and report["skipped"] == [] and report["num_images"] == 16
    assert len(query["results"]) <= 5 and all(hit["score"] >= threshold for hit in query["results"])
    assert all(Path(hit["path"]).parent == Path("street_photos") for hit in query["results"])
    [everything] = [completed.stdout for line, completed in ran.items() if "--min-score none" in line]
    assert len(re.findall(r"^\s+\d+\. ", everything, re.M)) == 10  # k defaults to 10; no cut


@pytest.mark.slow
def test_the_pipeline_snippet_ranks_the_photos_without_tireid_hf(ran, workdir, tmp_path):
    [snippet] = code_blocks(readme_section("Your own data"), "python")
    out = tmp_path / "printed.txt"
    code = f"import contextlib, os\nos.chdir({str(workdir)!r})\nwith open({str(out)!r}, 'w') as f, " \
           "contextlib.redirect_stdout(f):\n" + "".join(f"    {line}\n" for line in snippet.splitlines())
    run_without_tireid_hf(code, [], tmp_path)
    ranked = ast.literal_eval(out.read_text())
    assert len(ranked) == 5 and set(ranked[0]) == {"index", "score"}
    assert [hit["score"] for hit in ranked] == sorted((hit["score"] for hit in ranked), reverse=True)
    assert len({hit["index"] for hit in ranked}) == 5 and all(0 <= hit["index"] < 16 for hit in ranked)


def test_the_first_use_and_gallery_snippets_run_as_written(tmp_path, monkeypatch, tiny_processor):
    """README's "First use" block, then the GalleryIndex block under "Using a model", on a tiny saved model in
    ``out/demo-clip_reid``: the scores are the cosine of the two L2-normalised embeddings, and the index
    ranks the same images."""
    import torch

    from helpers import processor_images
    from tester import ModelTester

    ModelTester("clip_reid").model().export_for_inference().save_pretrained(tmp_path / "out" / "demo-clip_reid")
    tiny_processor.save_pretrained(tmp_path / "out" / "demo-clip_reid")
    monkeypatch.chdir(tmp_path)
    [first_use] = code_blocks(readme_section("First use"), "python")
    gallery = code_blocks(readme_section("Using a model"), "python")[0]
    namespace = {"pil_images": processor_images()}
    exec(first_use + gallery, namespace)  # noqa: S102 (the README's own snippets)
    text, images, scores = namespace["text"], namespace["images"], namespace["scores"]
    assert scores.shape == (1, 2)
    torch.testing.assert_close(torch.linalg.vector_norm(images, dim=-1), torch.ones(2))
    hits = namespace["hits"]
    assert list(hits.ids[0]) == scores[0].argsort(descending=True).tolist()
