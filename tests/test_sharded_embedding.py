"""Embedding sharded over two real processes (gloo): every item once, in order, for any item count."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

SCRIPT = textwrap.dedent("""
    import sys, torch
    from accelerate import Accelerator
    from tireid_hf.retrieval.embedding import _embed_in_batches
    accelerator = Accelerator(cpu=True)
    items = list(range(int(sys.argv[1])))
    seen = []
    def embed_batch(batch):
        seen.extend(batch)
        return torch.tensor([[float(i), float(i) ** 2] for i in batch])
    embeds = _embed_in_batches(items, 2, embed_batch, "items", 2, False, accelerator)
    torch.save({"embeds": embeds, "seen": seen}, f"{sys.argv[2]}.{accelerator.process_index}")
    accelerator.end_training()  # closes the gloo process group: exiting with it open can abort (SIGABRT)
""")


@pytest.mark.slow
@pytest.mark.parametrize("count", [5, 1], ids=["uneven-shards", "an-empty-shard"])
def test_two_processes_embed_every_item_once_and_gather_in_order(count, tmp_path):
    script = tmp_path / "embed.py"
    script.write_text(SCRIPT)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(script), str(count), str(tmp_path / "out")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": "29573"}
    completed = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"out.{rank}") for rank in (0, 1)]
    expected = torch.tensor([[float(i), float(i) ** 2] for i in range(count)])
    for rank in ranks:  # every process gets the whole result
        torch.testing.assert_close(rank["embeds"], expected, rtol=0, atol=0)
    assert sorted(ranks[0]["seen"] + ranks[1]["seen"]) == list(range(count))  # each item embedded once
