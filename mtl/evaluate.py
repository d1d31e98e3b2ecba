"""Evaluation per task and the run report (Markdown table + JSON)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader

from mtl.config import TaskConfig
from mtl.metrics import compute_metrics

TaskMetrics = dict[str, dict[str, float]]


@torch.no_grad()
def evaluate_tasks(
    model: nn.Module,
    loaders: Mapping[str, DataLoader],
    tasks: Mapping[str, TaskConfig],
    accelerator: Accelerator,
) -> TaskMetrics:
    """Metrics per task on its (prepared) loader; ``gather_for_metrics`` drops the padding duplicates
    that sharding adds at the end of an epoch, so each example counts exactly once."""
    was_training = model.training
    model.eval()
    out: TaskMetrics = {}
    for task, loader in loaders.items():
        preds, golds = [], []
        for batch in loader:
            logits = model(batch, task)
            pred, gold = accelerator.gather_for_metrics((logits.argmax(-1), batch["labels"]))
            preds.append(pred.cpu())
            golds.append(gold.cpu())
        if not preds:
            raise ValueError(f"task {task!r}: evaluation split is empty")
        gold_t = torch.cat(golds)
        if gold_t.dtype.is_floating_point:  # soft gold labels: score against their argmax
            gold_t = gold_t.argmax(-1)
        m = compute_metrics(torch.cat(preds).numpy(), gold_t.numpy(), len(tasks[task].label_names))
        m["metric"] = m[tasks[task].metric]
        out[task] = m
    model.train(was_training)
    return out


def mean_metric(metrics: TaskMetrics) -> float:
    """The mean over tasks of each task's own metric (the model-selection criterion)."""
    values = [m["metric"] for m in metrics.values() if not math.isnan(m["metric"])]
    return float(np.mean(values)) if values else float("nan")


def format_table(results: Mapping[str, TaskMetrics], tasks: Mapping[str, TaskConfig]) -> str:
    """A Markdown table: one row per task, its metric on each split, plus accuracy/macro-F1 and sizes."""
    splits = list(results)
    head = ["task", "metric", *splits]
    last = splits[-1] if splits else None
    if last:
        head += [f"{last} accuracy", f"{last} macro_f1", f"{last} n"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task in tasks:
        cells = [task, tasks[task].metric]
        cells += [f"{results[s][task]['metric']:.4f}" if task in results[s] else "-" for s in splits]
        if last and task in results[last]:
            m = results[last][task]
            cells += [f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}", str(int(m["n"]))]
        rows.append("| " + " | ".join(cells) + " |")
    means = [f"{mean_metric(results[s]):.4f}" for s in splits]
    rows.append("| " + " | ".join(["**mean**", "", *means] + ([""] * 3 if last else [])) + " |")
    return "\n".join(rows)


def write_report(
    folder: str | Path,
    results: Mapping[str, TaskMetrics],
    tasks: Mapping[str, TaskConfig],
    extra: Mapping[str, Any] | None = None,
    title: str = "mtl report",
) -> str:
    """Write ``report.md`` and ``report.json`` into ``folder``; return the Markdown table."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = format_table(results, tasks)
    lines = [f"# {title}", "", table, ""]
    for k, v in (extra or {}).items():
        lines.append(f"- {k}: {v}")
    (folder / "report.md").write_text("\n".join(lines) + "\n")
    payload = {"metrics": results, "mean": {s: mean_metric(r) for s, r in results.items()}, **(extra or {})}
    (folder / "report.json").write_text(json.dumps(payload, indent=2, default=float))
    return table
