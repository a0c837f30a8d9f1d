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


def _r1_differences(rows: dict, method: str) -> dict[str, tuple[float, float, float]]:
    """The method's rows of a ``{label: {"R1": "+d [low, high]"}}`` summary, parsed."""
    parsed = {label: parse_difference(row.get("R1")) for label, row in rows.items()
              if label.startswith(f"{method}: ") and not label.endswith("(re-ranked)")}
    return {label: value for label, value in parsed.items() if value is not None}


def attribution(method: str, comparison: dict, ablations: dict) -> str:
    """One paragraph, from the two summaries alone: the method's ΔR@1 over the baseline (full budget,
    seeds pooled); where its ``none of its additions`` row sits against the baseline and against the
    full method (the ablations' budget and seed); what the row without the paper's own contribution
    (``ablations["contributions"]``) costs — "no effect here" when its interval covers 0; and the
    method's ablation row that costs the most R@1 (none when no row is below the full method). An interval
    "covers 0" when low <= 0 <= high."""
    lead = comparison["differences"].get(method, {}).get("R1")
    differences = _r1_differences(ablations["differences"], method)
    against_baseline = _r1_differences(ablations.get("against_baseline", {}), method)
    words = [f"**{method}**: ΔR@1 over the baseline {lead or '—'} (full budget)."]
    none_label = f"{method}: {NONE_ROW}"
    if none_label in against_baseline:
        value = against_baseline[none_label]
        where = "on the baseline within its interval" if value[1] <= 0 <= value[2] else (
            "above the baseline" if value[1] > 0 else "below the baseline")
        words.append(f"Without any of its additions (the baseline's training on its embedding) it sits {where}: "
                     f"{_interval(value)} against the baseline's run at the same budget.")
    none = differences.get(none_label)
    if none is not None:
        verdict = ("within its interval of the full method" if none[1] <= 0 <= none[2] else
                   "below the full method: the method's additions carry that much" if none[2] < 0 else "above the full method")
        words.append(f"Against the full method that row is {_interval(none)}, {verdict}.")
    contribution = ablations.get("contributions", {}).get(method)
    if contribution in differences:
        value = differences[contribution]
        effect = ("shows no effect here (the interval covers 0)." if value[1] <= 0 <= value[2] else
                  f"carries {-value[0]:.2f} points of R@1." if value[2] < 0 else f"costs {value[0]:.2f} points of R@1.")
        words.append(f"The paper's own contribution (row `{contribution.removeprefix(method + ': ')}`): "
                     f"{_interval(value)} without it — it {effect}")
    if differences:
        label, value = min(differences.items(), key=lambda item: item[1][0])
        words.append(f"The row that costs the most: `{label.removeprefix(method + ': ')}` {_interval(value)}."
                     if value[0] < 0 else "No row scores below the full method.")
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
