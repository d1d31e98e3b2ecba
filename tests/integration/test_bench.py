"""mtl-bench end to end at the quick size (tiny encoder, a few steps) on every shipped benchmark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mtl.config import CONF_DIR, PROJECT_ROOT

DATA = PROJECT_ROOT.parent / "shared" / "data"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DATA / "wrench" / "sms").exists(), reason=f"real data not found at {DATA}"),
]


def _bench(name: str, out: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "mtl-bench"
    args = [f"bench={name}", "size=quick", f"output_dir={out}", f"cache_dir={cache}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for every benchmark: they share tasks, so each task is prepared and labelled once."""
    return tmp_path_factory.mktemp("bench-cache")


# Every benchmark's cells compose in tests/test_configs.py. End to end, CI runs three that between them
# use every kind of setup (single/multi-task, probe, weak labels, label model alone, gold_dev_only,
# gold mix and finetune, pretraining, budgets, slice heads, group DRO, JTT, augmentation, the slice
# report): the others add minutes, not coverage. MTL_TEST_ALL_BENCHES=1 runs every one.
ALL = sorted(p.stem for p in (CONF_DIR / "bench").glob("*.yaml"))
BENCHES = ALL if os.environ.get("MTL_TEST_ALL_BENCHES") else ["slices_spam", "spam", "tweets"]


@pytest.mark.parametrize("name", BENCHES)
def test_every_benchmark_runs_at_quick_size(name: str, tmp_path: Path, cache: Path) -> None:
    spec = yaml.safe_load((CONF_DIR / "bench" / f"{name}.yaml").read_text())
    out = tmp_path / "out"
    proc = _bench(name, out, cache)
    assert "failed" not in proc.stdout
    md = (out / "results.md").read_text()
    for setup, s in spec["setups"].items():
        for budget in s.get("budgets") or [None]:
            assert f"| {setup} | {'all' if budget is None else budget} | " in md
    assert (out / "setups.png").read_bytes()[:4] == b"\x89PNG"
    if any(s.get("budgets") for s in spec["setups"].values()):
        assert (out / "budgets.png").read_bytes()[:4] == b"\x89PNG"
    if spec.get("slice_report"):  # every setup's critical slices, and each slice per setup
        slices = md.split("## Slices", 1)[1]
        assert all(f"| {setup} | " in slices for setup in spec["setups"])
        assert "| slice (test rows) | " + " | ".join(spec["setups"]) + " |" in slices
    cell = json.loads(next((out / "cells").rglob("cell.json")).read_text())
    assert cell["status"] == "ok" and cell["config"]["seed"] == 0 and cell["versions"]["transformers"]
    assert set(cell["sizes"]) == set(cell["tasks"]) and set(cell["train_labels"]) == set(cell["tasks"])
    if name == "spam":  # a second run reuses every finished cell
        again = _bench(name, out, cache)
        assert again.stdout.count("(finished before: reused)") == again.stdout.count("] ok")
