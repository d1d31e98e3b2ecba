"""Resumable training state: what ``mtl-train resume=true`` continues an interrupted run from.

The trainer writes ``<output_dir>/state/`` after each evaluation (and every
``trainer.save_state_every_steps`` optimizer steps): the model's weights (safetensors), the optimizer
and scheduler states, the loop's position and bookkeeping (``loop.json``: epoch, micro-batches done in
it, batches drawn per task, best metrics so far...), each process's random number generator states,
and the resolved run config. A save goes to a temporary folder swapped in by renames, so a kill during
a save leaves the previous state. Loading uses ``torch.load(weights_only=True)``: nothing arbitrary is
unpickled. A run that finishes removes its state.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from mtl.checkpoint import swap_in
from mtl.types import MtlError


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "python": random.getstate(),
        "numpy": [name, np.asarray(keys).tolist(), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(s: Mapping[str, Any]) -> None:
    random.setstate(s["python"])
    np.random.set_state((s["numpy"][0], np.array(s["numpy"][1], dtype=np.uint32), *s["numpy"][2:]))
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def save_state(
    folder: Path,
    acc: Accelerator,
    model: torch.nn.Module,
    optimizer: Any,
    scheduler: Any,
    loop: Mapping[str, Any],
    config: Mapping[str, Any],
) -> None:
    """Write the state atomically (every process calls this)."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    acc.wait_for_everyone()
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        weights = {k: v.detach().cpu().contiguous() for k, v in acc.unwrap_model(model).state_dict().items()}
        save_file(weights, str(tmp / "model.safetensors"))
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optim.pt"
        )
        (tmp / "loop.json").write_text(json.dumps(dict(loop), default=float))
        (tmp / "config.json").write_text(json.dumps(dict(config), default=str))
    acc.wait_for_everyone()
    torch.save(_rng_state(), tmp / f"rng_{acc.process_index}.pt")
    acc.wait_for_everyone()
    if acc.is_main_process:
        swap_in(tmp, folder)
    acc.wait_for_everyone()


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [prefix.rstrip(".")] if a != b else []


def load_state(
    folder: Path,
    acc: Accelerator,
    model: torch.nn.Module,
    optimizer: Any,
    scheduler: Any,
    config: Mapping[str, Any],
) -> dict[str, Any]:
    """Restore weights, optimizer and scheduler from ``folder``; return the loop bookkeeping. The run's
    config must equal the saved one (except ``resume``); the RNG states are restored by ``restore_rng``."""
    if not (folder / "loop.json").exists():
        run = folder.parent
        raise MtlError(
            f"resume=true: nothing to resume in {run} (no state/ there; a run that finished removes it). "
            "Pass output_dir=<the interrupted run's folder>"
        )
    saved = json.loads((folder / "config.json").read_text())
    now = json.loads(json.dumps(dict(config), default=str))
    changed = [k for k in _diff(saved, now) if k != "resume"]
    if changed:
        raise MtlError(f"resume=true: the config differs from the interrupted run's in {changed} ({folder})")
    acc.unwrap_model(model).load_state_dict(load_file(str(folder / "model.safetensors")))
    optim = torch.load(folder / "optim.pt", weights_only=True)
    optimizer.load_state_dict(optim["optimizer"])
    scheduler.load_state_dict(optim["scheduler"])
    loop: dict[str, Any] = json.loads((folder / "loop.json").read_text())
    return loop


def restore_rng(folder: Path, acc: Accelerator) -> None:
    """Set this process's random number generators to their saved states."""
    path = folder / f"rng_{acc.process_index}.pt"
    if not path.exists():
        raise MtlError(f"resume=true: {path} is missing (was the run started with more processes?)")
    _set_rng_state(torch.load(path, weights_only=True))


def truncate_log(path: Path, step: int) -> None:
    """Drop the records of ``metrics.jsonl`` logged after ``step`` (they will be logged again)."""
    if path.exists():
        keep = [line for line in path.read_text().splitlines() if json.loads(line).get("step", 0) <= step]
        path.write_text("".join(f"{line}\n" for line in keep))
