"""The commands as a user runs them: sweeps, resuming from the run folder alone, help."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtl.config import PROJECT_ROOT

DATA = PROJECT_ROOT.parent / "shared" / "data"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DATA / "wrench" / "youtube").exists(), reason=f"real data not found at {DATA}"),
]
EXE = Path(sys.executable).parent
SMOKE = ["tasks=[youtube]", "encoder=tiny", "trainer=debug"]


def _run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [str(EXE / "mtl-train"), *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert (proc.returncode == 0) == ok, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def test_a_sweep_gives_every_job_its_folder_and_ranks_their_metrics(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = _run("-m", *SMOKE, "seed=1,2", f"hydra.sweep.dir={sweep}", f"cache_dir={tmp_path / 'cache'}")
    jobs = [json.loads(line) for line in (sweep / "sweep.jsonl").read_text().splitlines()]
    assert [j["job"] for j in jobs] == [0, 1] and ["seed=1" in j["overrides"] for j in jobs] == [True, False]
    for job in jobs:  # each job wrote its own report and checkpoint, and returned its best mean dev metric
        report = json.loads((sweep / str(job["job"]) / "report.json").read_text())
        assert report["checkpoint"] == str((sweep / str(job["job"]) / "checkpoint").resolve())
        assert job["metric"] == pytest.approx(report["mean"]["dev"]) and job["error"] is None
        seed = json.loads((sweep / str(job["job"]) / "run_config.json").read_text())["seed"]
        assert f"seed={seed}" in job["overrides"]
    table = (sweep / "sweep.md").read_text()
    assert table.startswith("| job | overrides | mean dev metric |") and table.strip() in proc.stdout
    assert "| seed=1 |" in table and "| seed=2 |" in table and "every job: tasks=[youtube]" in table
    # the same sweep resumed, one seed more: the finished jobs are reused, the new one runs
    again = _run(
        "-m",
        "resume=true",
        *SMOKE,
        "seed=1,2,3",
        f"hydra.sweep.dir={sweep}",
        f"cache_dir={tmp_path / 'cache'}",
    )
    rerun = [json.loads(line) for line in (sweep / "sweep.jsonl").read_text().splitlines()]
    assert [j["metric"] for j in rerun[:2]] == [j["metric"] for j in jobs] and rerun[2]["metric"] is not None
    assert (sweep / "2" / "report.json").exists()
    assert (again.stdout + again.stderr).count("finished before; its metric is reused") == 2


def test_a_killed_run_resumes_from_its_folder_alone(tmp_path: Path) -> None:
    run, cache = tmp_path / "run", tmp_path / "cache"
    args = [*SMOKE, "trainer.max_steps=40", "trainer.eval_every_steps=20", f"cache_dir={cache}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.Popen(
        [str(EXE / "mtl-train"), *args, "trainer.save_state_every_steps=5", f"output_dir={run}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.time() + 300
    while not (run / "state" / "loop.json").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert (run / "state" / "loop.json").exists() and not (run / "report.json").exists()
    refused = _run("resume=true", f"output_dir={run}", "trainer.batch_size=3", ok=False)
    assert "error: resume=true: a resumed run keeps its config" in refused.stderr
    assert "trainer.batch_size (given 3, the run had 8)" in refused.stderr
    proc = _run("resume=true", f"output_dir={run}")  # no other key: the run's own config
    log = proc.stdout + proc.stderr
    assert f"resumed from {run / 'state'}: step " in log, log[-3000:]
    report = json.loads((run / "report.json").read_text())
    assert report["steps"] == 40 and list(report["metrics"]["test"]) == ["youtube"]
    assert not (run / "state").exists()
    assert "nothing to resume" in _run("resume=true", f"output_dir={run}", ok=False).stderr


def test_help_says_what_the_command_does_and_lists_the_search_paths_tasks(tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "mine.yaml").write_text("mine:\n  label_names: [a, b]\n")
    out = _run("--help", f"hydra.searchpath=[file://{tmp_path}]").stdout
    assert out.startswith("mtl-train: train one shared encoder with a head per task")
    assert "mtl-train resume=true output_dir=outputs/train/<run>" in out
    groups = out.split("== Config groups")[1].split("== The composed config")[0]
    assert "experiment: spam, spam_weak, tweets, tweets_gold" in groups
    assert "On hydra.searchpath:\ntasks: mine\n" in groups
