"""Multi-process checks that need no second process: batch and split sizes, the shared run folder."""

from __future__ import annotations

import os
import time

import pytest

from mtl.config import _launcher_start, run_stamp
from mtl.dist import accelerator_kwargs, check_batches, check_sizes
from mtl.types import MtlError


def test_batch_sizes_must_split_across_processes() -> None:
    check_batches(32, 128, 2)
    check_batches(3, 5, 1)
    with pytest.raises(MtlError, match=r"trainer.batch_size=30 does not divide across 4 processes"):
        check_batches(30, 128, 4)
    with pytest.raises(MtlError, match=r"trainer.eval_batch_size=7 does not divide across 2"):
        check_batches(8, 7, 2)


def test_more_processes_than_rows_names_the_split() -> None:
    check_sizes({"sms": {"train": 2, "dev": 2, "test": 0}}, 2)  # an absent test split is not the launch's
    with pytest.raises(MtlError, match=r"4 processes but fewer rows than processes in sms/dev \(3 rows\)"):
        check_sizes({"sms": {"train": 100, "dev": 3}, "trec": {"train": 9}}, 4)


def test_single_process_runs_keep_accelerates_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert accelerator_kwargs() == {}
    assert _launcher_start() is None


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getppid()}/stat"), reason="needs /proc")
def test_every_rank_resolves_the_launchers_start_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    start = _launcher_start()  # this process's parent stands in for the launcher
    assert start is not None and start <= time.time() + 1
    assert run_stamp("%Y-%m-%d_%H-%M-%S") == time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(start))
    assert accelerator_kwargs() == ({} if __import__("torch").accelerator.is_available() else {"cpu": True})
