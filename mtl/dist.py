"""Running on several processes: accelerate's state made right for CPU-only machines, checks, clean exit.

``accelerate launch --config_file conf/accelerate/cpu_2proc.yaml -m mtl.cli.train ...`` (or ``torchrun``)
starts N processes with ``LOCAL_RANK``/``WORLD_SIZE`` set. On a machine with no accelerator, accelerate
only starts its process group when told that the run is on the CPU, so every ``Accelerator`` and
``PartialState`` of mtl is made with ``accelerator_kwargs()``; a launch whose processes still end up
alone (world size 1 where ``WORLD_SIZE`` says more) stops with an error rather than letting N copies of
one run overwrite each other's checkpoints.

``trainer.batch_size`` is the global batch of an optimizer micro-step: each of N processes takes
``batch_size / N`` rows of it (accelerate's ``split_batches``), so a run on N processes sees the same
batches, in the same order, as on one.

On several machines (``accelerate launch --num_machines M --machine_rank k``) each machine may have its
own disk: the main process (rank 0, on machine 0) alone writes the checkpoint, logs and resumable state,
and a plain training never reads them back on another process (``broadcast_weights``). What does read
the main process's files back (resuming, a run of several trainings) first checks that every process
sees them (``ranks_not_sharing``).
"""

from __future__ import annotations

import gc
import os
import time
import uuid
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from accelerate import Accelerator, PartialState
from accelerate.utils import broadcast_object_list, gather_object

from mtl.types import MtlError


def launched_world_size() -> int:
    """The number of processes the launcher (accelerate launch, torchrun) started; 1 when run directly."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def accelerator_kwargs() -> dict[str, Any]:
    """Keyword arguments for ``Accelerator``/``PartialState``: ``cpu=True`` for a multi-process launch on a
    machine without an accelerator (gloo backend), nothing otherwise."""
    if launched_world_size() > 1 and not torch.accelerator.is_available():
        return {"cpu": True}
    return {}


def state() -> PartialState:
    """accelerate's process state, created the way the trainer's ``Accelerator`` will be."""
    s = PartialState(**accelerator_kwargs())
    if launched_world_size() != s.num_processes:
        raise MtlError(
            f"the launcher started {launched_world_size()} processes but accelerate set up "
            f"{s.num_processes} ({s.distributed_type}); check the accelerate config "
            "(conf/accelerate/cpu_2proc.yaml runs 2 processes on a CPU machine)"
        )
    return s


def check_batches(batch_size: int, eval_batch_size: int, num_processes: int) -> None:
    """Both batch sizes must split evenly across the processes."""
    for key, value in (("trainer.batch_size", batch_size), ("trainer.eval_batch_size", eval_batch_size)):
        if value % num_processes:
            raise MtlError(
                f"{key}={value} does not divide across {num_processes} processes: it is the global batch, "
                f"each process takes {key.split('.')[1]} / {num_processes} rows; use a multiple of "
                f"{num_processes}"
            )


def check_sizes(sizes: dict[str, dict[str, int]], num_processes: int) -> None:
    """Every split needs at least one row per process (``sizes``: task -> split -> rows)."""
    small = [f"{t}/{s} ({n} rows)" for t, ns in sizes.items() for s, n in ns.items() if 0 < n < num_processes]
    if small:
        raise MtlError(
            f"{num_processes} processes but fewer rows than processes in {', '.join(small)}: "
            "launch fewer processes or give those splits more rows"
        )


def broadcast_weights(model: torch.nn.Module) -> None:
    """Copy the main process's parameters and buffers into ``model`` on every process, in place (a DDP
    wrapper around it keeps working): the main process's weights, read from its own disk, reach
    processes on machines that cannot read that disk. A no-op on one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    with torch.no_grad():
        for tensor in model.state_dict().values():  # views of the parameters and buffers
            dist.broadcast(tensor, src=0)


def ranks_not_sharing(folder: str | Path) -> list[int]:
    """The processes that do not see what the main process writes in ``folder``: those of machines
    without a filesystem shared with the main one (or given another path). Empty on one process and
    on one machine. Every process must call this (the main process writes a probe file there, and
    removes it)."""
    s = state()
    if s.num_processes == 1:
        return []
    probe = Path(folder) / broadcast_object_list([f".mtl-shared-{uuid.uuid4().hex}"])[0]
    if s.is_main_process:
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.touch()
    s.wait_for_everyone()
    seen: list[bool] = gather_object([_appears(probe)])
    if s.is_main_process:
        probe.unlink()
    return [rank for rank, ok in enumerate(seen) if not ok]


def _appears(path: Path, wait_s: float = 5.0) -> bool:
    """Whether ``path`` exists, looking again for up to ``wait_s`` seconds: an NFS client may cache that
    it did not exist a moment ago."""
    deadline = time.monotonic() + wait_s
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


def release(accelerator: Accelerator | None = None, barrier: bool = True) -> None:
    """Drop the prepared (DDP-wrapped) model and optimizer and destroy the process group before the
    interpreter exits: left to interpreter shutdown, gloo's threads can abort a rank. ``barrier``: wait
    for every process first (not after an error: the others may never arrive)."""
    if accelerator is not None:
        accelerator.free_memory()
    gc.collect()
    if dist.is_available() and dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()


__all__ = [
    "accelerator_kwargs",
    "broadcast_weights",
    "check_batches",
    "check_sizes",
    "launched_world_size",
    "ranks_not_sharing",
    "release",
    "state",
]
