"""The GPU check (benchmarks/gpu_check.sh, bench_training's device table) on the CPU: the --smoke run
is the same code as on a GPU at tiny sizes, so it cannot rot before a GPU is lent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_training  # noqa: E402
import gpu_check  # noqa: E402

MASK, START, END = 49405, 49406, 49407


@pytest.mark.slow
def test_the_smoke_check_measures_against_irra_trains_in_bf16_and_reloads(tmp_path):
    """LCR²S (two stages) through the whole script: the tables in bf16 and fp32 against IRRA's step,
    `accelerate launch --mixed_precision bf16 train.py`, the AutoModel reload, the JSON and Markdown."""
    completed = subprocess.run([str(REPO / "benchmarks" / "gpu_check.sh"), "--smoke", "--methods", "lcr2s",
                                "--out", str(tmp_path)], capture_output=True, text=True,
                               env={**os.environ, "HF_HOME": str(tmp_path / "hf")})
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    rows = [(row["method"], row["stage"], row["precision"]) for row in report["benchmark"]]
    irra = ("irra (reference)", "its own step", "fp16 weights (IRRA's)")
    assert rows == [irra, ("lcr2s", "teacher", "bf16"), ("lcr2s", "student", "bf16"),
                    irra, ("lcr2s", "teacher", "fp32"), ("lcr2s", "student", "fp32")]
    for row in report["benchmark"]:
        assert row["finite_losses"] and row["batch"] == 4 and row["steps"] == 2 and row["compiled"] is False
        assert row["samples_per_second"] == pytest.approx(4 / row["step_ms"] * 1000)
    anchors = [row["step_ms"] for row in report["benchmark"] if row["method"] == "irra (reference)"]
    for index, row in enumerate(report["benchmark"]):
        assert row["step_vs_irra"] == pytest.approx(row["step_ms"] / anchors[index // 3])
    [training] = report["training"]
    assert training["ok"] and training["finite_losses"] and training["saved_class"] == "LCR2SModel"
    assert training["logged_losses"] == 4  # 2 steps in each of the 2 stages, logging_steps 1
    assert training["max_embedding_difference"] <= 1e-2
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "| lcr2s | student | cpu | fp32 | no | 4 |" in markdown and "| lcr2s | 2 |" in markdown
    assert (tmp_path / "runs" / "lcr2s" / "model.safetensors").is_file()


def test_irra_masks_by_its_dataset_rule():
    """Tokens 0 and >= 49405 are never chosen; a chosen token's label is the token, every other label 0 and
    its token unchanged; a caption with nothing chosen gets its token 1 masked."""
    ids = torch.zeros(64, 77, dtype=torch.long)
    ids[:, 0], ids[:, 1:31], ids[:, 31] = START, torch.arange(100, 130), END
    ids[0, 1:3], ids[0, 3:] = torch.tensor([320, END]), 0  # one word only, drawn below 0.15 or not
    mlm_ids, labels = bench_training.irra_masked_tokens(ids, torch.Generator().manual_seed(0))
    chosen = labels != 0
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(mlm_ids[~chosen], ids[~chosen])
    assert not chosen[:, 0].any() and not chosen[:, 31:].any()  # start, end and padding
    assert chosen[0, 1] and chosen[0].sum() == 1 and labels[0, 1] == 320
    changed = mlm_ids[chosen]
    assert 0.7 < (changed == MASK).float().mean() < 0.9  # 80 % masks of about 290 chosen
    assert 0.1 < chosen[1:, 1:31].float().mean() < 0.2  # 15 % of 63 x 30 words

    empty = torch.tensor([[START, END] + [0] * 75])
    mlm_ids, labels = bench_training.irra_masked_tokens(empty, torch.Generator().manual_seed(0))
    assert mlm_ids[0, :3].tolist() == [START, MASK, 0] and labels[0, :3].tolist() == [0, END, 0]


def test_irra_batch_pads_captions_with_zeros_to_its_context_length():
    batch = {"pixel_values": torch.zeros(2, 3, 64, 32), "pids": torch.tensor([3, 3]),
             "input_ids": torch.tensor([[START, 320, END, END], [START, 320, 530, END]]),
             "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])}
    irra = bench_training.irra_batch(batch, 77, seed=0)
    assert irra["caption_ids"].shape == (2, 77)
    assert irra["caption_ids"][:, :5].tolist() == [[START, 320, END, 0, 0], [START, 320, 530, END, 0]]
    assert irra["caption_ids"].argmax(dim=-1).tolist() == [2, 3]  # IRRA's end-of-text position
    with pytest.raises(ValueError, match="78 tokens, more than IRRA's context length 77"):
        bench_training.irra_batch({**batch, "input_ids": torch.ones(2, 78, dtype=torch.long)}, 77, seed=0)


def test_irra_is_built_at_the_size_from_the_vendored_code_with_fp16_weights():
    model = bench_training.build_irra("tiny", num_ids=5)
    assert type(model).__module__ == "model.build"
    assert Path(sys.modules["model.build"].__file__).parent == REPO / "benchmarks" / "reference" / "irra" / "model"
    assert model.base_model.visual.conv1.weight.dtype == torch.float16  # its convert_weights
    assert model.base_model.visual.positional_embedding.shape == (4 * 2 + 1, 64)  # 64x32 at stride 16
    assert model.classifier.out_features == 5 and model.base_model.transformer.layers == 2


def test_the_device_table_refuses_cuda_where_there_is_none(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="--device cuda: CUDA is not available here"):
        bench_training.main(["--device", "cuda", "--precision", "bf16"])
    with pytest.raises(SystemExit):
        gpu_check.main([])
    assert "no CUDA device here" in capsys.readouterr().err


def test_device_options_without_a_device_are_refused(capsys):
    with pytest.raises(SystemExit):
        bench_training.parse_arguments(["--precision", "bf16", "--compile"])
    assert "--precision, --compile belong to the device table" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_training.parse_arguments(["--device", "cpu", "--batch", "0"])
    assert "--batch must be >= 1, got 0" in capsys.readouterr().err


def test_the_tables_show_skipped_rows_and_failed_checks():
    common = {"stage": "main", "device_name": "H100", "precision": "bf16", "compiled": "inductor", "batch": 64}
    rows = [{"method": "clip_reid", **common, "step_ms": 250.0, "samples_per_second": 256.0, "step_vs_irra": 1.25,
             "peak_memory_mib": 20480.4, "finite_losses": True},
            {"method": "uit", **common, "skipped": "the time budget of 300 s was spent before this row"}]
    assert bench_training.device_markdown(rows).splitlines()[2:] == [
        "| clip_reid | main | H100 | bf16 | inductor | 64 | 250.0 | 256.0 | 1.25 | 20480 | yes |",
        "| uit | main | H100 | bf16 | inductor | 64 | — | — | — | — | skipped: the time budget of 300 s was spent before this row |"]
    records = [{"method": "cada", "steps_per_stage": 50, "seconds": 61.2, "error": "train.py exited with 1"}]
    assert gpu_check.training_markdown(records).splitlines()[2] == "| cada | 50 | 61 | — | — | — | — | NO: train.py failed |"


def test_the_compiled_table_runs_every_step_through_torch_compile():
    """``--compile``'s path at tiny size with torch.compile's ``eager`` backend: Dynamo captures the graphs of
    IRRA's step and the method's (graph breaks, guards and recompiles included), without the code generation
    that takes minutes on a CPU; the rows say which backend compiled them."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    rows = bench_training.device_table(["clip_reid"], "tiny", torch.device("cpu"), "bf16", "eager", steps=1,
                                       batch_size=4, warmup=1)
    torch._dynamo.reset()
    assert [(row["method"], row["compiled"]) for row in rows] == [("irra (reference)", "eager"), ("clip_reid", "eager")]
    assert all(row["finite_losses"] for row in rows)
    assert counters["stats"]["unique_graphs"] >= 2  # at least one graph of IRRA's model and one of the method's
