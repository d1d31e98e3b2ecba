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

from mtl.metrics import compute_metrics
from mtl.task import Task

TaskMetrics = dict[str, dict[str, Any]]
"""Task name to its metrics (``accuracy``, ``macro_f1``, ``f1`` for binary tasks, ``n``, ``metric``: the
task's own, named by ``metric_name``) and, for tasks with slicing functions, ``slices``: slice name to
the same metrics on it."""


@torch.no_grad()
def evaluate_tasks(
    model: nn.Module,
    loaders: Mapping[str, DataLoader],
    tasks: Mapping[str, Task],
    accelerator: Accelerator,
) -> TaskMetrics:
    """Metrics per task on its (prepared) loader; ``gather_for_metrics`` drops the padding duplicates
    that sharding adds at the end of an epoch, so each example counts exactly once."""
    was_training = model.training
    model.eval()
    out: TaskMetrics = {}
    for task, loader in loaders.items():
        t = tasks[task]
        preds, golds, slices = [], [], []
        for batch in loader:
            logits = model(batch, task)
            items = (logits.argmax(-1), batch["labels"], *([batch["slices"]] if "slices" in batch else []))
            gathered = accelerator.gather_for_metrics(items)
            preds.append(gathered[0].cpu())
            golds.append(gathered[1].cpu())
            if len(gathered) > 2:
                slices.append(gathered[2].cpu())
        if not preds:
            raise ValueError(f"task {task!r}: evaluation split is empty")
        gold_t = torch.cat(golds)
        if gold_t.dtype.is_floating_point:  # soft gold labels: score against their argmax
            gold_t = gold_t.argmax(-1)
        pred, gold = torch.cat(preds).numpy(), gold_t.numpy()
        k, metric = t.num_classes, t.metric.value
        m: dict[str, Any] = compute_metrics(pred, gold, k)
        m["metric"], m["metric_name"] = m[metric], metric
        if slices and t.sfs:
            S = torch.cat(slices).numpy().astype(bool)
            m["slices"] = {}
            for j, name in enumerate(t.slice_names):
                # an empty slice reports n = 0 and NaN metrics, not a division by zero
                sm: dict[str, Any] = compute_metrics(pred[S[:, j]], gold[S[:, j]], k)
                sm["metric"] = sm[metric]
                m["slices"][name] = sm
        out[task] = m
    model.train(was_training)
    return out


def mean_metric(metrics: TaskMetrics) -> float:
    """The mean over tasks of each task's own metric (the model-selection criterion)."""
    values = [m["metric"] for m in metrics.values() if not math.isnan(m["metric"])]
    return float(np.mean(values)) if values else float("nan")


def format_table(results: Mapping[str, TaskMetrics], tasks: Mapping[str, Task]) -> str:
    """A Markdown table: one row per task, its metric on each split, plus accuracy/macro-F1 and sizes."""
    splits = list(results)
    head = ["task", "metric", *splits]
    last = splits[-1] if splits else None
    if last:
        head += [f"{last} accuracy", f"{last} macro_f1", f"{last} n"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task in tasks:
        cells = [task, tasks[task].metric.value]
        cells += [f"{results[s][task]['metric']:.4f}" if task in results[s] else "-" for s in splits]
        if last and task in results[last]:
            m = results[last][task]
            cells += [f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}", str(int(m["n"]))]
        rows.append("| " + " | ".join(cells) + " |")
    means = [f"{mean_metric(results[s]):.4f}" for s in splits]
    rows.append("| " + " | ".join(["**mean**", "", *means] + ([""] * 3 if last else [])) + " |")
    return "\n".join(rows)


def format_slice_table(results: Mapping[str, TaskMetrics], tasks: Mapping[str, Task]) -> str:
    """A Markdown table of every slice: the task's metric and the slice's size on each split; empty if
    no task has slicing functions."""
    splits = list(results)
    rows = []
    for task in tasks:
        names = next((list(r[task]["slices"]) for r in results.values() if "slices" in r.get(task, {})), [])
        for name in ["(all)", *names]:
            cells = [task, name]
            for s in splits:
                m = results[s].get(task, {})
                m = m if name == "(all)" else m.get("slices", {}).get(name, {})
                n = int(m.get("n", 0))
                cells.append("empty" if n == 0 else f"{m['metric']:.4f} (n={n})")
            rows.append("| " + " | ".join(cells) + " |")
    if not rows or all("(all)" in r for r in rows):
        return ""
    head = ["task", "slice", *[f"{s} metric" for s in splits]]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *rows])


def slice_plot(results: Mapping[str, TaskMetrics], tasks: Mapping[str, Task], path: Path) -> bool:
    """``path`` (PNG): per task with slicing functions, the metric of all rows and of each slice on the
    last split of ``results`` (test, after training), with its row count and an approximate 95%
    interval (normal approximation of a proportion: the slices that lag stand out at a glance).
    False, and nothing written, when no task has slices."""
    split = list(results)[-1]
    shown = {t: m for t, m in results[split].items() if m.get("slices") and t in tasks}
    if not shown:
        return False
    from matplotlib.figure import Figure  # only runs with slices need it

    heights = [len(m["slices"]) + 1 for m in shown.values()]
    fig = Figure(figsize=(7, 0.9 + 0.32 * sum(heights) + 0.5 * len(shown)))
    axes = fig.subplots(len(shown), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, (task, m) in zip(axes, shown.items(), strict=True):
        parts = [("(all)", m), *m["slices"].items()]
        names = [f"{name} (n={int(sm['n'])})" for name, sm in parts]
        values = [float(sm["metric"]) if sm["n"] else float("nan") for _, sm in parts]
        half = [
            1.96 * (v * (1 - v) / max(int(sm["n"]), 1)) ** 0.5
            for v, (_, sm) in zip(values, parts, strict=True)
        ]
        colors = ["#4c72b0"] + ["#dd8452" if v < values[0] else "#55a868" for v in values[1:]]
        ax.barh(range(len(parts)), values, xerr=half, color=colors, capsize=3)
        ax.axvline(values[0], color="#4c72b0", linestyle=":", linewidth=1)
        ax.set_yticks(range(len(parts)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_title(f"{task}: {tasks[task].metric.value} on {split} (orange: below all rows)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def write_report(
    folder: str | Path,
    results: Mapping[str, TaskMetrics],
    tasks: Mapping[str, Task],
    extra: Mapping[str, Any] | None = None,
    title: str = "mtl report",
    sections: Mapping[str, str] | None = None,
) -> str:
    """Write ``report.md`` and ``report.json`` into ``folder`` (with slices, also ``slices.csv`` and the
    picture ``slices.png``, see ``slice_plot``); return the Markdown tables. ``extra`` goes into both (as
    a list in the Markdown), ``sections`` (title to Markdown) into ``report.md``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = format_table(results, tasks)
    lines = [f"# {title}", "", table, ""]
    slice_table = format_slice_table(results, tasks)
    if slice_table:
        lines += ["## Slices", "", slice_table, ""]
        if slice_plot(results, tasks, folder / "slices.png"):
            lines += ["![each slice's metric with its size and a 95% interval](slices.png)", ""]
        with open(folder / "slices.csv", "w") as f:
            f.write("task,split,slice,n,metric,accuracy,macro_f1\n")
            for split, per_task in results.items():
                for task, m in per_task.items():
                    for name, sm in m.get("slices", {}).items():
                        f.write(
                            f"{task},{split},{name},{sm['n']},{sm['metric']},{sm['accuracy']},{sm['macro_f1']}\n"
                        )
    for name, text in (sections or {}).items():
        lines += [f"## {name}", "", text, ""]
    for k, v in (extra or {}).items():
        lines.append(f"- {k}: {v}")
    (folder / "report.md").write_text("\n".join(lines) + "\n")
    payload = {"metrics": results, "mean": {s: mean_metric(r) for s, r in results.items()}, **(extra or {})}
    (folder / "report.json").write_text(json.dumps(payload, indent=2, default=float))
    more = [slice_table] + [f"{name}:\n{text}" for name, text in (sections or {}).items()]
    return "\n\n".join([table, *(m for m in more if m)])
