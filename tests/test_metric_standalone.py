"""The `evaluate` module stands alone: loaded from its folder (or its Space folder) in a fresh Python
where `tireid_hf` cannot be imported, it computes what `rank_metrics` computes."""

import json

import numpy as np
import pytest

from helpers import run_without_tireid_hf
from tireid_hf.hub.metric_space import write_metric_space
from tireid_hf.metrics import METRIC_PATH, rank_metrics

STANDALONE = """
import json
import evaluate
folders, problem_file, out_file = sys.argv[1:]
problem = json.loads(open(problem_file).read())
out = []
for folder in json.loads(folders):
    metric = evaluate.load(folder)
    assert not type(metric).__module__.startswith("tireid_hf"), type(metric).__module__
    out.append({
        "example": metric.compute(predictions=[[0.9, 0.5, 0.1], [0.2, 0.3, 0.8]], references=[0, 1],
                                  gallery_pids=[0, 1, 1]),
        "random": metric.compute(**problem),
    })
open(out_file, "w").write(json.dumps(out))
"""


def test_module_computes_without_tireid_hf_from_its_folder_and_its_space(tmp_path):
    space = write_metric_space(tmp_path / "space" / "tireid_retrieval")
    rng = np.random.default_rng(0)
    gallery_pids = rng.integers(0, 8, 40)
    query_pids = np.append(rng.choice(gallery_pids, 30), 99)  # the last query has no match: skipped
    similarity = rng.integers(0, 6, (31, 40)) / 5  # a coarse grid: many ties
    problem = dict(predictions=similarity.tolist(), references=query_pids.tolist(), gallery_pids=gallery_pids.tolist(),
                   ks=[1, 3], skip_queries_without_match=True)
    (tmp_path / "problem.json").write_text(json.dumps(problem))

    run_without_tireid_hf(STANDALONE, [json.dumps([METRIC_PATH, str(space)]), tmp_path / "problem.json",
                                       tmp_path / "out.json"], tmp_path)

    expected = rank_metrics(similarity, query_pids, gallery_pids, ks=(1, 3), skip_queries_without_match=True)
    # hand-computed: each query's relevant items rank first; positive pairs 0.9, 0.3, 0.8 and negatives
    # 0.5, 0.1, 0.2, of which none may be accepted: 0.9 and 0.8 are
    by_hand = {"R1": 100.0, "R5": 100.0, "R10": 100.0, "mAP": 100.0, "mINP": 100.0,
               "TPR@FPR=1e-2": 200 / 3, "TPR@FPR=1e-3": 200 / 3, "num_queries": 2}
    for got in json.loads((tmp_path / "out.json").read_text()):
        assert got["random"] == expected and got["random"]["num_skipped_queries"] == 1
        assert got["example"] == pytest.approx(by_hand, abs=1e-12)
