"""``mtl-eval``: load a checkpoint, evaluate it per task on dev/test, print and write the table."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import hydra
from accelerate import Accelerator
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from mtl.checkpoint import CheckpointError, load_checkpoint
from mtl.cli import user_errors
from mtl.config import CONF_DIR
from mtl.data import Collator, load_tasks
from mtl.evaluate import evaluate_tasks, mean_metric, write_report
from mtl.runs import task_configs


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="eval")
@user_errors
def main(cfg: DictConfig) -> float:
    model, tokenizer, saved, info = load_checkpoint(cfg.checkpoint)
    # Without tasks=[...], evaluate the checkpoint's own tasks with the data config they were trained on.
    tasks = task_configs(cfg) if cfg.tasks else saved
    for name, task in tasks.items():
        if name not in saved:
            raise CheckpointError(f"{cfg.checkpoint}: no head for task {name!r}; heads: {sorted(saved)}")
        if list(task.label_names) != list(saved[name].label_names):
            raise CheckpointError(
                f"{cfg.checkpoint}: head {name!r} was trained on labels "
                f"{saved[name].label_names}, the task config has {task.label_names}"
            )
    # Evaluation reads gold dev/test only: don't weak-label the train split of weakly supervised tasks.
    gold = {name: dataclasses.replace(task, labels="gold") for name, task in tasks.items()}
    data = load_tasks(gold, tokenizer, int(info["max_length"]), cfg.cache_dir, cfg.seed)
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
