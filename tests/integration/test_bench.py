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


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF_DIR / "bench").glob("*.yaml")))
def test_every_benchmark_runs_at_quick_size(name: str, tmp_path: Path) -> None:
    spec = yaml.safe_load((CONF_DIR / "bench" / f"{name}.yaml").read_text())
    out = tmp_path / "out"
    proc = _bench(name, out, tmp_path / "cache")
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
        again = _bench(name, out, tmp_path / "cache")
        assert again.stdout.count("(finished before: reused)") == again.stdout.count("] ok")
