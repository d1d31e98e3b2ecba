"""Several machines without a shared disk, as two processes (gloo) of this one that each take their own
folder for their disk: what only the main process writes never has to be read on the other."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from accelerate import Accelerator
from omegaconf import OmegaConf

from mtl.cli.train import check_shared_output
from mtl.dist import accelerator_kwargs, broadcast_weights, ranks_not_sharing, release
from mtl.resume import save_state
from mtl.types import MtlError

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _machine(rank: int, port: int, root: Path) -> None:
    """Rank ``rank``, alone on its "machine": its disk is ``root / f"disk{rank}"``."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_RANK="0",
        LOCAL_WORLD_SIZE="1",
        OMP_NUM_THREADS="1",
    )
    acc = Accelerator(**accelerator_kwargs())
    assert (acc.num_processes, acc.process_index) == (WORLD, rank)
    disk = root / f"disk{rank}"
    assert ranks_not_sharing(root / "shared") == []  # one folder that both see
    assert ranks_not_sharing(disk / "out") == [1]  # each its own: the main process's file is not on disk1
    if rank == 0:  # the probe files are gone
        assert not list((root / "shared").iterdir()) and not list((disk / "out").iterdir())

    # the main process's weights reach the other in place, parameters and buffers
    torch.manual_seed(rank)
    model = torch.nn.Linear(3, 2)
    model.register_buffer("seen", torch.full((2,), float(rank)))
    params = model.weight
    broadcast_weights(model)
    torch.manual_seed(0)
    expected = torch.nn.Linear(3, 2)
    assert model.weight is params and torch.equal(model.weight, expected.weight)
    assert torch.equal(model.get_buffer("seen"), torch.zeros(2))

    # the resumable state: all of it, every process's random number states included, on the main disk
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    save_state(disk / "out" / "state", acc, model, optimizer, scheduler, {"step": 1}, {})
    if rank == 0:
        saved = sorted(p.name for p in (disk / "out" / "state").iterdir())
        assert saved == ["config.json", "loop.json", "model.safetensors", "optim.pt", "rng_0.pt", "rng_1.pt"]
    else:
        assert not disk.exists()

    # resuming reads the main process's files back on every process: refused on both, at once
    cfg = OmegaConf.create(
        {"output_dir": str(disk / "out"), "resume": True, "gold": {"mode": "none"}}
        | {"self_train": {"rounds": 0}, "jtt": {"upweight": 0.0}}
    )
    with pytest.raises(MtlError, match=r"resume=true on several machines: .* process\(es\) \[1\] do not see"):
        check_shared_output(cfg)
    cfg.output_dir = str(root / "shared")
    check_shared_output(cfg)  # a shared folder
    cfg.resume = False
    cfg.output_dir = str(disk / "out")
    check_shared_output(cfg)  # a plain training needs no shared folder
    release(acc)


pytestmark = pytest.mark.slow  # two spawned processes importing mtl: seconds, not milliseconds


def test_what_the_main_process_writes_is_never_read_on_another_machine(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    mp.start_processes(_machine, args=(_free_port(), tmp_path), nprocs=WORLD, start_method="spawn")
