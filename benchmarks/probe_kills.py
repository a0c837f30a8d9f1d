"""Kill-and-resume probe: train the tiny test config once uninterrupted, then again with ``kill -9`` at
random named states (a training step, a checkpoint written but not renamed, a pruning, the final move)
and a resume after each kill, and compare the final weights and results bit for bit.

    python benchmarks/probe_kills.py --kills 10 --seed 0      # prints one line per kill, then a summary

The kills come from the ``TIREID_TEST_KILL_AT`` hook (``tireid_hf.faults``): the process sends
itself SIGKILL at the state, so every kill lands where it is meant to. Figures: benchmarks/RESULTS.md,
"Reliability".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from test_training_run import CONFIG  # noqa: E402  (the tiny config of the training tests)

MAX_STEPS, SAVE_STEPS = 24, 3  # 6 batches per epoch: validation at 6, 12, 18, 24


def train(folder: Path, *extra: str, kill_at: str | None = None) -> int:
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "save_steps": SAVE_STEPS}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    env.pop("TIREID_TEST_KILL_AT", None)
    if kill_at:
        env["TIREID_TEST_KILL_AT"] = kill_at
    command = [sys.executable, str(REPO / "train.py"), "--config", str(config), "--output_dir", str(folder / "out"),
               "--max_steps", str(MAX_STEPS), *extra]
    return subprocess.run(command, env=env, cwd=folder, capture_output=True, text=True).returncode


def kill_plan(kills: int, rng: random.Random) -> list[str]:
    """``kills`` kill points in run order: random steps and checkpoints, one pruning, the final move."""
    checkpoints = list(range(SAVE_STEPS, MAX_STEPS + 1, SAVE_STEPS))
    pruning = rng.choice(checkpoints[2:])  # a pruning happens from the third checkpoint on (2 kept)
    points = {("checkpoint_pruning", pruning)}
    while len(points) < kills - 1:
        if rng.random() < 0.5:
            points.add(("training_step", rng.randint(1, MAX_STEPS)))
        else:
            points.add(("checkpoint_written", rng.choice(checkpoints)))
    happens_first = ("training_step", "checkpoint_written", "checkpoint_pruning")  # within one step
    order = sorted(points, key=lambda point: (point[1], happens_first.index(point[0])))
    return [f"{name}:{step}" for name, step in order] + ["final_move"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="probe-kills-") as scratch:
        whole, parts = Path(scratch) / "whole", Path(scratch) / "parts"
        whole.mkdir(), parts.mkdir()
        assert train(whole) == 0
        survived = 0
        for point in kill_plan(args.kills, random.Random(args.seed)):
            has_checkpoint = any((parts / "out" / "checkpoints").glob("checkpoint-*[0-9]"))
            resume = ("--resume_from_checkpoint", "latest") if has_checkpoint else ("--overwrite_output_dir",)
            code = train(parts, *resume, kill_at=point)
            print(f"kill at {point}: {'killed (SIGKILL)' if code == -9 else f'exit {code} (the state was not reached)'}")
            survived += code == -9
        assert train(parts, "--resume_from_checkpoint", "latest") == 0
        a, b = load_file(whole / "out" / "model.safetensors"), load_file(parts / "out" / "model.safetensors")
        identical = a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)
        results = [json.loads((folder / "out" / "results.json").read_text()) for folder in (whole, parts)]
        same_test = results[0]["test"] == results[1]["test"]
        print(f"{survived} kills, resumed each time: final weights {'bit-identical' if identical else 'DIFFERENT'}, "
              f"test metrics {'identical' if same_test else 'DIFFERENT'}; runtime {results[1]['train_runtime_seconds']:.1f} s "
              f"over all processes vs {results[0]['train_runtime_seconds']:.1f} s uninterrupted")


if __name__ == "__main__":
    main()
