"""Two "machines" on this one (two ``accelerate launch --num_machines 2`` that rendezvous on 127.0.0.1,
one process each) against one process.

Each node is started from its own folder with the same command line and *relative* ``cache_dir`` and
``output_dir``: like two real machines without a shared filesystem, where the same path names a different
disk on each. Node 1 prepares its data into its own cache, and nothing of the run may need a file that
only node 0 wrote. The checkpoint, report and logs are written once, by node 0.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from mtl.config import PROJECT_ROOT
from tests.integration.test_distributed import OVERRIDES, WORKER, pytestmark

__all__ = ["pytestmark"]  # slow, and skipped without the real data, like test_distributed.py

CONFIG = PROJECT_ROOT / "conf" / "accelerate" / "cpu_2node.yaml"
TIMEOUT_S = 300  # a rendezvous that never completes or a rank stuck in a collective fails here


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a launcher (it stops its workers on SIGTERM) and any worker left (they run in sessions of
    their own, out of reach of a signal to the launcher's group)."""
    try:
        workers = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        workers = []
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for worker in psutil.wait_procs(workers, 10)[1]:
        worker.kill()


def _launch_nodes(folders: list[Path], args: list[str]) -> None:
    """Run node k from ``folders[k]`` (its machine) to the end; fail with every node's output when one
    fails or they take longer than ``TIMEOUT_S``, stopping the others."""
    accelerate = str(Path(sys.executable).parent / "accelerate")
    port = _free_port()
    procs, logs = [], []
    for rank, folder in enumerate(folders):
        cmd = [accelerate, "launch", "--config_file", str(CONFIG), "--machine_rank", str(rank)]
        cmd += ["--main_process_ip", "127.0.0.1", "--main_process_port", str(port), str(WORKER), *args]
        log = (folder / "launch.log").open("wb")
        logs.append(log)
        proc = subprocess.Popen(
            cmd, cwd=folder, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        procs.append(proc)
    deadline, failed = time.monotonic() + TIMEOUT_S, ""
    try:
        while any(p.poll() is None for p in procs):
            if any(p.returncode not in (None, 0) for p in procs):
                failed = "a node failed"
                break
            if time.monotonic() > deadline:
                failed = f"timed out after {TIMEOUT_S} s"
                break
            time.sleep(0.5)
        else:
            failed = "" if all(p.returncode == 0 for p in procs) else "a node failed"
    finally:
        for p in procs:
            _stop(p)
        for log in logs:
            log.close()
    if failed:
        outputs = "\n".join(
            f"--- node {k} (exit {p.returncode}):\n{(f / 'launch.log').read_text(errors='replace')[-6000:]}"
            for k, (p, f) in enumerate(zip(procs, folders, strict=True))
        )
        pytest.fail(f"{failed}\n{outputs}")


def test_two_nodes_match_one(tmp_path: Path) -> None:
    one, nodes = tmp_path / "one", [tmp_path / "node0", tmp_path / "node1"]
    for folder in (one, *nodes):
        (folder / "out").mkdir(parents=True)  # the worker writes rank<r>.pt there
    common = [*OVERRIDES, "cache_dir=cache", "output_dir=out"]
    cmd = [sys.executable, str(WORKER), *common]
    proc = subprocess.run(cmd, cwd=one, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-5000:]}"
    _launch_nodes(nodes, common)

    single = torch.load(one / "out" / "rank0.pt", weights_only=True)
    # node k ran rank k: each wrote its file on its own "disk"
    assert sorted(p.name for p in (nodes[0] / "out").glob("rank*.pt")) == ["rank0.pt"]
    assert sorted(p.name for p in (nodes[1] / "out").glob("rank*.pt")) == ["rank1.pt"]
    ranks = [torch.load(nodes[r] / "out" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["rank"] for r in ranks] == [0, 1]
    assert ranks[0]["params"].keys() == ranks[1]["params"].keys() == single["params"].keys()
    for name, p in ranks[0]["params"].items():
        assert torch.equal(p, ranks[1]["params"][name]), name  # the replicas on both machines agree
        # the tolerance of test_distributed.py: the same global batches, summed in another order
        torch.testing.assert_close(p, single["params"][name], atol=2e-5, rtol=1e-4, msg=name)
    for split in ("dev", "test"):
        for task in ("youtube", "sms"):
            a, b = single["metrics"][split][task], ranks[0]["metrics"][split][task]
            assert b["n"] == a["n"]
            assert b["metric"] == pytest.approx(a["metric"], abs=1e-9), (split, task)
            c = ranks[1]["metrics"][split][task]  # node 1 reports the same metrics
            assert (c["n"], c["metric"]) == (b["n"], b["metric"])
    # each node prepared its data in its own cache; node 0 alone wrote the checkpoint, report and log
    for node in nodes:
        assert any((node / "cache" / "prepared").iterdir())
    assert (nodes[0] / "out" / "checkpoint" / "model.json").exists()
    written = {p.name for p in (nodes[0] / "out").iterdir()}
    assert {"checkpoint", "report.json", "metrics.jsonl", "run_config.json"} <= written
    assert not (nodes[0] / "out" / "state").exists()
    assert [p.name for p in (nodes[1] / "out").iterdir()] == ["rank1.pt"]
