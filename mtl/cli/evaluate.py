"""``mtl-eval``: load a checkpoint, evaluate it per task on dev/test, print and write the table."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path

import hydra
from accelerate import Accelerator
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from mtl.checkpoint import CheckpointError, checkpoint_dir, load_checkpoint
from mtl.cli import run_tasks, user_errors
from mtl.cli.sweep import per_job_output
from mtl.config import CONF_DIR, AugmentConfig, TaskConfig
from mtl.data import Collator
from mtl.evaluate import evaluate_tasks, mean_metric, write_report
from mtl.prepare import load_tasks
from mtl.task import Task, resolve_tasks


def checkpoint_task_options(args: list[str]) -> list[str]:
    """Make the tasks of the checkpoint named by ``checkpoint=...`` in ``args`` options of the ``tasks``
    config group (Hydra's ConfigStore, searched after ``conf/`` and ``hydra.searchpath``): a checkpoint
    carries its tasks' configs, so ``tasks=[<one of its tasks>]`` composes without the search path it
    was trained with (a task shipped in ``conf/tasks/`` keeps its file). Returns the checkpoint's task
    names (none when the checkpoint cannot be read: the command then reports that itself)."""
    paths = [a.split("=", 1)[1] for a in args if a.startswith("checkpoint=")]
    try:
        root = checkpoint_dir(paths[-1]) if paths else None
    except CheckpointError:
        return []
    if root is None:
        return []
    names = [str(t) for t in json.loads((root / "model.json").read_text()).get("tasks", [])]
    store = ConfigStore.instance()
    shipped = {p.stem for p in (CONF_DIR / "tasks").glob("*.yaml")}  # a file of the same name wins
    for name in (n for n in names if n not in shipped):
        meta = json.loads((root / "heads" / f"{name}.json").read_text())
        store.store(group="tasks", name=name, node={name: meta["config"]})
    return names


def check_heads(checkpoint: str, tasks: Mapping[str, Task], saved: Mapping[str, TaskConfig]) -> None:
    """Every task has a head in the checkpoint, trained on the same classes (the error names both)."""
    for name, task in tasks.items():
        if name not in saved:
            raise CheckpointError(f"{checkpoint}: no head for task {name!r}; heads: {sorted(saved)}")
        if task.label_names != list(saved[name].label_names):
            raise CheckpointError(
                f"{checkpoint}: head {name!r} was trained on labels {saved[name].label_names}, "
                f"the task config has {task.label_names}"
            )


def main() -> None:
    """``mtl-eval``'s entry point: the checkpoint's own tasks become ``tasks=`` options, then Hydra runs."""
    checkpoint_task_options(sys.argv[1:])
    evaluate()


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="eval")
@user_errors
def evaluate(cfg: DictConfig) -> float:
    """Evaluate ``cfg.checkpoint`` on its own tasks or on ``cfg.tasks``; return the mean metric of the
    last split."""
    per_job_output(cfg)
    model, tokenizer, saved, info = load_checkpoint(cfg.checkpoint)
    # Without tasks=[...], evaluate the checkpoint's own tasks with the data config they were trained on.
    tasks = run_tasks(cfg) if cfg.tasks else resolve_tasks(saved)
    check_heads(cfg.checkpoint, tasks, saved)
    # Evaluation reads gold labels only: no weak labels, no augmented copies (of a train split asked for).
    tasks = {name: task.replace(labels="gold", augment=AugmentConfig()) for name, task in tasks.items()}
    data = load_tasks(tasks, tokenizer, int(info["max_length"]), cfg.cache_dir, cfg.seed, list(cfg.splits))
    acc = Accelerator()
    model = acc.prepare(model)
    collate = Collator(tokenizer)
    results = {}
    for split in cfg.splits:
        loaders = {
            t: acc.prepare(DataLoader(d[split], batch_size=cfg.batch_size, collate_fn=collate))
            for t, d in data.items()
        }
        results[split] = evaluate_tasks(model, loaders, tasks, acc)
    if acc.is_main_process:
        extra = {"checkpoint": str(Path(cfg.checkpoint).resolve())}
        table = write_report(cfg.output_dir, results, tasks, extra, "mtl-eval report")
        print(f"\n{table}\n\nreport: {Path(cfg.output_dir).resolve() / 'report.md'}")
    return mean_metric(results[cfg.splits[-1]])


if __name__ == "__main__":
    main()
