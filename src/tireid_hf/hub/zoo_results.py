"""The zoo's synthetic-benchmark results as the report and the model cards state them, read from the
report's committed JSON (``benchmarks/zoo_summary.json``, ``benchmarks/zoo_ablations.json``).

A paired difference is the string ``"+d [low, high]"`` written by ``benchmarks/zoo.py``: the method's
metric minus its reference's on the same test queries, with the 95 % paired identity-bootstrap interval.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

BASELINE = "clip_reid"
INTERVAL = re.compile(r"^([+-]?\d+\.\d+) \[([+-]?\d+\.\d+), ([+-]?\d+\.\d+)\]$")
NONE_ROW = "none of its additions"


def parse_difference(text: str | None) -> tuple[float, float, float] | None:
    """``(difference, low, high)`` of a paired difference ``"+d [low, high]"``; None for anything else."""
    match = INTERVAL.match(text or "")
    return tuple(float(group) for group in match.groups()) if match else None


def _interval(value: tuple[float, float, float]) -> str:
    return f"{value[0]:+.2f} [{value[1]:+.2f}, {value[2]:+.2f}]"


def attribution(method: str, comparison: dict, ablations: dict) -> str:
    """One paragraph, from the two summaries alone: the method's ΔR@1 over the baseline (full budget,
    seeds pooled); where its ``none of its additions`` row sits against the full method; what the row
    without the paper's own contribution (``ablations["contributions"]``) costs — "no effect here" when
    its interval covers 0; and the method's ablation row that costs the most R@1."""
    lead = comparison["differences"].get(method, {}).get("R1")
    differences = {label: parse_difference(row.get("R1")) for label, row in ablations["differences"].items()
                   if label.startswith(f"{method}: ") and not label.endswith("(re-ranked)")}
    differences = {label: value for label, value in differences.items() if value is not None}
    words = [f"**{method}**: ΔR@1 over the baseline {lead or '—'} (full budget)."]
    none = differences.get(f"{method}: {NONE_ROW}")
    if none is not None:
        verdict = ("within its interval of the full method" if none[1] <= 0 <= none[2] else
                   "below the full method: the method's additions carry that much" if none[2] < 0 else "above the full method")
        words.append(f"Without any of its additions (the baseline's training on its embedding): {_interval(none)}, {verdict}.")
    contribution = ablations.get("contributions", {}).get(method)
    if contribution in differences:
        value = differences[contribution]
        effect = ("shows no effect here (the interval covers 0)." if value[1] <= 0 <= value[2] else
                  f"carries {-value[0]:.2f} points of R@1." if value[2] < 0 else f"costs {value[0]:.2f} points of R@1.")
        words.append(f"The paper's own contribution (row `{contribution.removeprefix(method + ': ')}`): "
                     f"{_interval(value)} without it — it {effect}")
    if differences:
        label, value = min(differences.items(), key=lambda item: item[1][0])
        words.append(f"The row that costs the most: `{label.removeprefix(method + ': ')}` {_interval(value)}.")
    return " ".join(words)


def synthetic_results(method: str, benchmarks: str | Path) -> dict | None:
    """What a model card shows of ``method`` on the synthetic benchmark: ``{"R1", "mAP"}`` (mean, sample
    std over seeds), ``seeds``, ``difference`` (ΔR@1 vs the baseline, or None for the baseline) and
    ``attribution`` (:func:`attribution`, None for the baseline); None when the summaries are absent."""
    summary_path, ablations_path = Path(benchmarks) / "zoo_summary.json", Path(benchmarks) / "zoo_ablations.json"
    if not summary_path.is_file() or not ablations_path.is_file():
        return None
    comparison, ablations = json.loads(summary_path.read_text()), json.loads(ablations_path.read_text())
    row = comparison["rows"].get(method)
    if row is None:
        return None
    return {"R1": row["R1"], "mAP": row["mAP"], "seeds": comparison["seeds"],
            "difference": comparison["differences"].get(method, {}).get("R1"),
            "attribution": None if method == BASELINE else attribution(method, comparison, ablations)}
