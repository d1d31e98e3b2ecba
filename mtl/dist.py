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
"""

from __future__ import annotations

import gc
import os
from typing import Any

import torch
import torch.distributed as dist
from accelerate import Accelerator, PartialState

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
    "check_batches",
    "check_sizes",
    "launched_world_size",
    "release",
    "state",
]
