"""Resumable training state: what ``mtl-train resume=true`` continues an interrupted run from.

The trainer writes ``<output_dir>/state/`` after each evaluation (and every
``trainer.save_state_every_steps`` optimizer steps): the model's weights (safetensors), the optimizer
and scheduler states, the loop's position and bookkeeping (``loop.json``: epoch, micro-batches done in
it, batches drawn per task, best metrics so far...), each process's random number generator states,
and the resolved run config. A save goes to a temporary folder swapped in by renames, so a kill during
a save leaves the previous state. Loading uses ``torch.load(weights_only=True)``: nothing arbitrary is
unpickled. A run that finishes removes its state.

``resume_config`` makes ``mtl-train resume=true output_dir=<run>`` enough: the run's own config (saved as
``<run>/run_config.json`` when it started) is the resumed run's; an override given again with the same
value is accepted, one with another value is refused by name.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import save_file

from mtl.checkpoint import swap_in
from mtl.config import TrainConfig
from mtl.model import load_weights
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
    """Write the state atomically (every process calls this; the main process writes it all, the random
    number states of every process included: the others may be on machines that do not see its disk)."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    rngs = gather_object([_rng_state()])
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
        for rank, rng in enumerate(rngs):
            torch.save(rng, tmp / f"rng_{rank}.pt")
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
    config must equal the saved one (except ``resume`` and how ``output_dir`` is spelled); the RNG
    states are restored by ``restore_rng``."""
    if not (folder / "loop.json").exists():
        run = folder.parent
        raise MtlError(
            f"resume=true: nothing to resume in {run} (no state/ there; a run that finished removes it). "
            "Pass output_dir=<the interrupted run's folder>"
        )
    saved = json.loads((folder / "config.json").read_text())
    now = json.loads(json.dumps(dict(config), default=str))
    changed = [k for k in _diff(saved, now) if k not in ("resume", "output_dir")]  # the folder: as spelled
    if changed:
        raise MtlError(f"resume=true: the config differs from the interrupted run's in {changed} ({folder})")
    acc.unwrap_model(model).load_state_dict(load_weights(folder / "model.safetensors"))
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


RUN_CONFIG = "run_config.json"
"""A run's resolved config, written to its output folder when it starts (what ``resume_config`` reads)."""
_ABSENT = object()


def _at(tree: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return _ABSENT
        tree = tree[part]
    return tree


def _given(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default=_ABSENT)
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True, enum_to_str=True)
    return str(value) if isinstance(value, Enum) else value


def resume_config(cfg: DictConfig, overrides: Sequence[str], log: Any = None) -> DictConfig:
    """The config to resume the interrupted run in ``cfg.output_dir`` with: the run's saved config
    (``run_config.json``), with ``resume=true`` and the given ``output_dir``. ``overrides`` are the
    command line's: one setting a key to another value than the run had is refused by name; one that
    is no key of the config (a group such as ``experiment=...``) is ignored, said in the log."""
    run = Path(cfg.output_dir)
    path = run / RUN_CONFIG
    if not path.exists():
        path = run / "state" / "config.json"  # runs started before run_config.json was written
    if not path.exists():
        raise MtlError(
            f"resume=true: nothing to resume in {run} (no {RUN_CONFIG} there; a run that finished removes "
            "its state/). Pass output_dir=<the interrupted run's folder>"
        )
    saved = json.loads(path.read_text())
    saved["output_dir"] = str(cfg.output_dir)
    changed, ignored = [], []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in ("resume", "output_dir") or key.startswith("hydra"):
            continue
        value = _given(cfg, key)
        if value is _ABSENT:
            ignored.append(override)
        elif value != _at(saved, key):
            was = _at(saved, key)
            changed.append(f"{key} (given {value!r}, the run had {None if was is _ABSENT else was!r})")
    if changed:
        raise MtlError(
            f"resume=true: a resumed run keeps its config ({path}); these overrides change it: "
            f"{'; '.join(changed)}. Drop them, or start a new run"
        )
    if ignored and log is not None:
        log.info("resume=true: %s ignored: the run's saved config (%s) is used", " ".join(ignored), path)
    try:
        out = OmegaConf.merge(OmegaConf.structured(TrainConfig), saved)
    except Exception as e:  # a config saved by another version of mtl
        raise MtlError(f"resume=true: the saved config {path} does not fit this version of mtl: {e}") from e
    assert isinstance(out, DictConfig)
    out.resume = True
    return out
