"""Checkpoints: the encoder via ``save_pretrained``, one safetensors file per head, JSON/YAML metadata.

Layout::

    checkpoint/
      encoder/            AutoModel.from_pretrained(checkpoint / "encoder") and its tokenizer
      heads/<task>.safetensors   the head's weights
      heads/<task>.json          label names, head options, the task's config
      model.json          pooling, max_length, task list, format version
      config.yaml         the fully resolved Hydra config of the run
      metrics.json        the metrics at save time

Nothing is unpickled on load: weights are safetensors, metadata is JSON/YAML. A save writes to a sibling
temporary folder and swaps it in with renames, so a crash mid-save leaves the previous checkpoint (or,
in the instant between the two renames, its ``.old`` copy, which ``load_checkpoint`` falls back to).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from safetensors.torch import save_file
from transformers import PreTrainedTokenizerBase

from mtl.config import HeadConfig, TaskConfig, as_task_config
from mtl.heads import TaskHead, build_head
from mtl.model import MultitaskModel, load_pretrained, load_weights
from mtl.types import MtlError

FORMAT_VERSION = 1


class CheckpointError(MtlError):
    """A checkpoint folder that is missing, foreign or inconsistent; the message names the path."""


def save_checkpoint(
    path: str | Path,
    model: MultitaskModel,
    tokenizer: PreTrainedTokenizerBase,
    tasks: Mapping[str, TaskConfig],
    *,
    max_length: int,
    config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` atomically to ``path`` (replacing any checkpoint there) and return the path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "heads").mkdir(parents=True)
    model.encoder.save_pretrained(tmp / "encoder", safe_serialization=True)
    tokenizer.save_pretrained(tmp / "encoder")
    for name, head in model.heads.items():
        state = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
        save_file(state, str(tmp / "heads" / f"{name}.safetensors"))
        task = tasks[name]
        meta = {
            "task": name,
            "label_names": list(task.label_names),
            "head": asdict(task.head),
            "in_features": model.hidden_size,
            "num_slices": model.num_slices[name],
            "config": asdict(task),
        }
        (tmp / "heads" / f"{name}.json").write_text(json.dumps(meta, indent=2))
    info = {
        "format_version": FORMAT_VERSION,
        "pooling": model.pooling,
        "max_length": max_length,
        "tasks": list(model.heads),
    }
    (tmp / "model.json").write_text(json.dumps(info, indent=2))
    (tmp / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(dict(config or {}))))
    (tmp / "metrics.json").write_text(json.dumps(dict(metrics or {}), indent=2, default=float))
    # Some writers create files 0600; a checkpoint is meant to be shared like any other output.
    umask = os.umask(0)
    os.umask(umask)
    for f in tmp.rglob("*"):
        f.chmod((0o777 if f.is_dir() else 0o666) & ~umask)
    swap_in(tmp, path)
    return path


def swap_in(tmp: Path, path: Path) -> None:
    """Replace the folder ``path`` by ``tmp`` with renames: at every instant either the old folder (as
    ``path`` or ``path.old``) or the new one is complete on disk."""
    old = path.with_name(f"{path.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def checkpoint_dir(path: str | Path) -> Path:
    """The folder to load: ``path``, or its ``.old`` copy when a save was interrupted between renames."""
    p = Path(path)
    if (p / "model.json").exists():
        return p
    old = p.with_name(f"{p.name}.old")
    if (old / "model.json").exists():
        return old
    if not p.exists():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist")
    raise CheckpointError(
        f"{str(p)!r} is not an mtl checkpoint (no model.json); did you mean a run's checkpoint/?"
    )


def load_checkpoint(
    path: str | Path,
) -> tuple[MultitaskModel, PreTrainedTokenizerBase, dict[str, TaskConfig], dict[str, Any]]:
    """Load a checkpoint: the model (CPU, eval mode), its tokenizer, its tasks' configs and ``model.json``."""
    root = checkpoint_dir(path)
    info = json.loads((root / "model.json").read_text())
    if info.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{root}: checkpoint format {info.get('format_version')}, expected {FORMAT_VERSION}"
        )
    encoder, tokenizer = load_pretrained(root / "encoder", "checkpoint encoder", use_safetensors=True)
    heads: dict[str, TaskHead] = {}
    tasks: dict[str, TaskConfig] = {}
    for name in info["tasks"]:
        meta = json.loads((root / "heads" / f"{name}.json").read_text())
        task = as_task_config(meta["config"])
        if int(meta["in_features"]) != int(encoder.config.hidden_size):
            raise CheckpointError(
                f"{root}: head {name!r} expects {meta['in_features']} features but the encoder's hidden size "
                f"is {encoder.config.hidden_size}"
            )
        head = build_head(
            int(meta["in_features"]),
            len(meta["label_names"]),
            HeadConfig(**meta["head"]),
            int(meta.get("num_slices", 0)),
        )
        state = load_weights(root / "heads" / f"{name}.safetensors")
        head.load_state_dict(state)
        heads[name], tasks[name] = head, task
    model = MultitaskModel(encoder, heads, pooling=info["pooling"]).eval()
    model.tokenizer, model.max_length = tokenizer, int(info["max_length"])
    return model, tokenizer, tasks, info
