"""``mtl-slices`` on a checkpoint trained here (tiny encoder, WRENCH youtube): files, SFs and the
rediscovery table of youtube's hand-written slices; bad input named in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from mtl.checkpoint import load_checkpoint
from mtl.cli.slices import slices
from mtl.cli.train import train
from mtl.config import CONF_DIR, PROJECT_ROOT
from mtl.prepare import load_task_splits
from mtl.slicing import load_sfs
from mtl.task import Task

DATA = PROJECT_ROOT.parent / "shared" / "data"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DATA / "wrench" / "youtube").exists(), reason=f"real data not found at {DATA}"),
]
EXE = Path(sys.executable).parent


def _compose(name: str, overrides: list[str]):  # type: ignore[no-untyped-def]
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        return compose(name, overrides)


def test_mtl_slices_writes_sfs_and_the_rediscovery_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, cache, out = tmp_path / "run", tmp_path / "cache", tmp_path / "slices"
    train_cfg = [
        "tasks=[youtube]",
        "encoder=tiny",
        "trainer=debug",
        f"output_dir={run}",
        f"cache_dir={cache}",
    ]
    train(_compose("train", train_cfg), echo=False)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    args = [f"checkpoint={run / 'checkpoint'}", f"output_dir={out}", f"cache_dir={cache}", "min_size=10"]
    proc = subprocess.run(
        [str(EXE / "mtl-slices"), *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = json.loads((out / "report.json").read_text())["tasks"]["youtube"]
    assert report["n"] == 120 and report["k"] == 3 and 0 < report["errors"] < 120
    assert report["slices"], "a model this weak errs more in some cluster than overall"
    for s in report["slices"]:
        assert s["size"] >= 10 and s["gap"] > 0 and s["score"] == pytest.approx(s["size"] * s["gap"])
    assert [s["score"] for s in report["slices"]] == sorted(
        (s["score"] for s in report["slices"]), reverse=True
    )
    # the written SFs load and mark, on the dev split, exactly the rows the report gives them
    saved = load_checkpoint(run / "checkpoint")[2]
    dev = load_task_splits(Task("youtube", saved["youtube"]), cache, 42)["dev"]
    sfs = load_sfs(f"{out / 'youtube_slices.py'}:SFS")
    with_sf = {s["name"]: s["keyword_sf"]["rows"] for s in report["slices"] if s["keyword_sf"]["words"]}
    assert [sf.name for sf in sfs] == list(with_sf)
    for sf in sfs:
        assert [i for i, row in enumerate(dev) if sf(row)] == with_sf[sf.name]
    # the hand-written slices of tasks/spam.py:SFS, each with its best match
    red = report["rediscovery"]
    assert red["hand_slices"] == "tasks/spam.py:SFS" and red["jaccard_threshold"] == 0.3
    assert [h["name"] for h in red["slices"]] == ["short", "has_link", "has_number", "all_caps"]
    assert red["rediscovered"] == sum(h["rediscovered"] for h in red["slices"]) <= red["critical"]
    for h in red["slices"]:
        assert h["critical"] == (h["size"] >= 10) and 0 <= h["jaccard"] <= 1
        assert h["rediscovered"] == (h["critical"] and h["jaccard"] >= 0.3)
    md = (out / "report.md").read_text()
    assert "### Hand-written slices (tasks/spam.py:SFS): rediscovered" in md and md.strip() in proc.stdout
    assert "| has_link |" in md and "| youtube | 120 |" in md

    # bad input, in-process: one line naming the task and the key
    def error(*overrides: str) -> str:
        with pytest.raises(SystemExit) as e:
            slices(_compose("slices", [f"checkpoint={run / 'checkpoint'}", f"cache_dir={cache}", *overrides]))
        assert e.value.code == 2
        return capsys.readouterr().err.strip()

    assert "no head for task 'sms'; heads: ['youtube']" in error(
        "tasks=[sms]", f"output_dir={tmp_path / 'x'}"
    )
    assert error("k=121", f"output_dir={tmp_path / 'y'}") == (
        "error: task 'youtube': k=121 clusters need at least 121 dev rows, but its dev split has 120; "
        "pass a smaller k"
    )
    assert error("k=1") == "error: out of range: k=1 (must be >= 2)"
