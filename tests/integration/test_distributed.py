"""Two processes (DDP over gloo, launched by accelerate with conf/accelerate/cpu_2proc.yaml) against one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtl.config import PROJECT_ROOT

DATA = PROJECT_ROOT.parent / "shared" / "data"
WORKER = Path(__file__).with_name("dist_worker.py")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DATA / "wrench" / "sms").exists(), reason=f"real data not found at {DATA}"),
]
# Two tasks, length-grouped batches, no dropout (each process would draw its own masks), gradient
# clipping on, 14 optimizer steps of a global batch of 8: 4 rows per process.
OVERRIDES = [
    "tasks=[youtube,sms]",
    "encoder=tiny",
    "trainer=debug",
    "trainer.max_steps=14",
    "trainer.eval_every_steps=7",
    "+encoder.random_init.hidden_dropout_prob=0",
    "+encoder.random_init.attention_probs_dropout_prob=0",
    "tasks.youtube.head.dropout=0",
    "tasks.sms.head.dropout=0",
    "++tasks.sms.split.max_rows.train=300",
]


def _run(args: list[str]) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600, cwd=PROJECT_ROOT)
    assert proc.returncode == 0, f"{args[:4]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-5000:]}"


def test_two_processes_match_one(tmp_path: Path) -> None:
    common = [*OVERRIDES, f"cache_dir={tmp_path / 'cache'}"]
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, str(WORKER), *common, f"output_dir={one}"])
    accelerate = str(Path(sys.executable).parent / "accelerate")
    config = str(PROJECT_ROOT / "conf" / "accelerate" / "cpu_2proc.yaml")
    _run([accelerate, "launch", "--config_file", config, str(WORKER), *common, f"output_dir={two}"])

    single = torch.load(one / "rank0.pt", weights_only=True)
    ranks = [torch.load(two / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert single["world_size"] == 1
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["rank"] for r in ranks] == [0, 1]
    # DDP keeps the replicas identical: same gradients (all-reduced), same updates
    assert ranks[0]["params"].keys() == ranks[1]["params"].keys() == single["params"].keys()
    for name, p in ranks[0]["params"].items():
        assert torch.equal(p, ranks[1]["params"][name]), name
        # the same global batches in the same order: one process ends where two do (up to summation order)
        torch.testing.assert_close(p, single["params"][name], atol=2e-5, rtol=1e-4, msg=name)
    for split in ("dev", "test"):
        for task in ("youtube", "sms"):
            a, b = single["metrics"][split][task], ranks[0]["metrics"][split][task]
            assert b["n"] == a["n"]  # every example counted once: no duplicates from uneven shards
            assert b["metric"] == pytest.approx(a["metric"], abs=1e-9), (split, task)
    assert (two / "checkpoint" / "model.json").exists() and not (two / "state").exists()
