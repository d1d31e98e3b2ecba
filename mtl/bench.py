"""The benchmark runner behind ``mtl-bench``: transfer setups over seeds, one table, plots.

A benchmark (``conf/bench/<name>.yaml``, schema ``BenchSpec``) names setups (``SetupConfig``): a
multi-task run, single-task runs, intermediate-task transfer (``pretrain`` then ``init_from``), any
extra overrides (a frozen encoder, weak labels), and label budgets. ``expand`` turns it into cells, one
``mtl-train`` run each (composed and run in-process), in ``<output_dir>/cells/<setup>/<budget>/seed<s>``:

* a cell records its resolved config, seed, data sizes, label sources and library versions with its
  metrics in ``cell.json``; a finished cell is reused unless ``force``; a cell that fails is recorded
  as failed (with the error) and shown as failed in the table, never dropped;
* pretraining runs are shared by the setups and seeds that need them (``<output_dir>/pretrain/``);
* a setup with ``dev_folds: K`` is the gold-labels-only baseline of weak supervision: K cells per seed
  (``.../seed<s>/fold<f>``), each training on the dev split's gold rows outside one fold and selecting
  its checkpoint on that fold (``split.dev_folds``); a seed scores the mean of its K models' test
  metrics (``folds_per_seed: n``: n of the K folds per seed, rotating over seeds). With ``gold: mix`` or
  ``gold: finetune`` the cells are the weak pipeline with those gold rows in training instead
  (``gold.mode``, ``mtl.config.GoldConfig``), over the same folds.

``summarise`` writes ``results.md`` and ``results.csv`` (per setup and task: mean, std and n of the
test metric over seeds, and the mean over the setup's tasks) and ``plots`` draws ``setups.png``, with
budgets ``budgets.png`` and with a slice report ``slices.png`` (``slice_picture``).
"""

from __future__ import annotations

import gc
import importlib.metadata
import json
import logging
import math
import platform
import shutil
import statistics
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from mtl.config import BenchSpec, SliceMetric
from mtl.types import MtlError

log = logging.getLogger("mtl.bench")
QUICK_NOTE = (
    "Quick size: a tiny random encoder, a few steps: it checks the pipeline; its numbers mean nothing."
)
Runner = Callable[[list[str]], dict[str, Any]]
"""Runs one ``mtl-train`` from its overrides and returns its report (``mtl.cli.train.train``)."""


@dataclass
class Cell:
    """One run of a benchmark: a setup, a seed, a budget (None: all rows) and, for single-task
    setups, the task."""

    setup: str
    seed: int
    budget: int | None
    tasks: list[str]
    overrides: list[str]
    folder: Path
    pretrain: Cell | None = None
    result: dict[str, Any] = field(default_factory=dict)
    fold: int | None = None

    @property
    def key(self) -> str:
        return str(self.folder)


def merge_overrides(overrides: Sequence[str], tasks: Sequence[str]) -> list[str]:
    """Overrides with one value per key, the last one winning (a ``+``/``++`` prefix is kept); those of
    a task not in ``tasks`` are left out (a benchmark's size caps name every task it uses)."""
    out: dict[str, str] = {}
    plus: dict[str, str] = {}
    for o in overrides:
        key, _, _ = o.partition("=")
        bare = key.lstrip("+")
        if bare.startswith("tasks.") and bare.split(".")[1] not in tasks:
            continue
        plus[bare] = key[: len(key) - len(bare)] or plus.get(bare, "")
        out.pop(bare, None)
        out[bare] = o.partition("=")[2]
    return [f"{plus[k]}{k}={v}" for k, v in out.items()]


def validate(spec: BenchSpec, known_tasks: Sequence[str]) -> None:
    """Errors naming the setup and key: unknown tasks, an empty setup, a bad label source or budget."""
    if not spec.setups:
        raise MtlError(f"bench {spec.name!r}: no setups")
    if spec.quick_dev_folds < 2:
        raise MtlError(f"bench {spec.name!r}: quick_dev_folds must be >= 2, got {spec.quick_dev_folds}")
    for name, s in spec.setups.items():
        for key, tasks in (("tasks", s.tasks), ("pretrain", s.pretrain or [])):
            unknown = [t for t in tasks if t not in known_tasks]
            if unknown:
                raise MtlError(
                    f"bench {spec.name!r}, setup {name!r}: {key} names unknown tasks {unknown} "
                    f"(known: the files in conf/tasks/)"
                )
        if not s.tasks:
            raise MtlError(f"bench {spec.name!r}, setup {name!r}: tasks is empty")
        if s.labels not in (None, "gold", "weak"):
            raise MtlError(
                f"bench {spec.name!r}, setup {name!r}: labels must be gold or weak, got {s.labels!r}"
            )
        if any(b is not None and b < 1 for b in s.budgets or []):
            raise MtlError(f"bench {spec.name!r}, setup {name!r}: budgets must be >= 1 (or null: all rows)")
        gold = s.gold != "none"
        if s.dev_folds and (s.dev_folds < 2 or s.budgets or s.labels == ("gold" if gold else "weak")):
            raise MtlError(
                f"bench {spec.name!r}, setup {name!r}: dev_folds cross-fits on the dev split's gold labels: "
                "it needs at least 2 folds and no budgets, and weak labels only with gold (mix or "
                f"finetune), got dev_folds={s.dev_folds}, labels={s.labels}, gold={s.gold}"
            )
        if s.compare_to is not None and s.compare_to not in spec.setups:
            raise MtlError(
                f"bench {spec.name!r}, setup {name!r}: compare_to {s.compare_to!r} is not a setup of the "
                f"benchmark ({sorted(spec.setups)})"
            )
        if gold and not s.dev_folds:
            raise MtlError(
                f"bench {spec.name!r}, setup {name!r}: gold={s.gold} trains on the dev split's gold labels, "
                "cross-fitted: set dev_folds (e.g. 5)"
            )


def dev_folds(spec: BenchSpec, setup: str, size: str) -> int:
    """The folds a setup's seed runs (0: not cross-fitted): ``dev_folds``, at most ``quick_dev_folds`` at
    the quick size."""
    k = spec.setups[setup].dev_folds
    return min(k, spec.quick_dev_folds) if k and size == "quick" else k


def seed_folds(spec: BenchSpec, setup: str, size: str, seed: int) -> list[int | None]:
    """The folds a seed of a setup runs: ``[None]`` when not cross-fitted, all K folds, or with
    ``folds_per_seed`` n the n folds from ``(i * n) % K`` on, i the seed's position in the size's seeds."""
    k = dev_folds(spec, setup, size)
    n = spec.folds_per_seed
    if not k:
        return [None]
    if n is None or n >= k:
        return list(range(k))
    i = (spec.seeds if size == "full" else spec.quick_seeds).index(seed)
    return [(i * n + j) % k for j in range(n)]


def expand(spec: BenchSpec, size: str, out: Path, base: Sequence[str]) -> list[Cell]:
    """Every cell of the benchmark at ``size``, with its ``mtl-train`` overrides."""
    if size not in ("full", "quick"):
        raise MtlError(f"size must be full or quick, got {size!r}")
    common = [*base, *spec.common, *(spec.full if size == "full" else spec.quick)]
    seeds = spec.seeds if size == "full" else spec.quick_seeds
    pretrained: dict[tuple[tuple[str, ...], int], Cell] = {}
    cells = []
    for name, s in spec.setups.items():
        k = dev_folds(spec, name, size)
        for seed in seeds:
            pre = None
            if s.pretrain:
                key = (tuple(s.pretrain), seed)
                if key not in pretrained:
                    folder = out / "pretrain" / "+".join(s.pretrain) / f"seed{seed}"
                    ov = [*common, f"tasks=[{','.join(s.pretrain)}]", f"seed={seed}", f"output_dir={folder}"]
                    ov = merge_overrides(ov, s.pretrain)
                    pretrained[key] = Cell("pretrain", seed, None, list(s.pretrain), ov, folder)
                pre = pretrained[key]
            for budget in s.budgets or [None]:
                for tasks in [[t] for t in s.tasks] if s.single else [list(s.tasks)]:
                    for fold in seed_folds(spec, name, size, seed):
                        folder = (
                            out / "cells" / name / ("all" if budget is None else str(budget)) / f"seed{seed}"
                        )
                        folder = folder / tasks[0] if s.single else folder
                        folder = folder if fold is None else folder / f"fold{fold}"
                        ov = [*common, f"tasks=[{','.join(tasks)}]", f"seed={seed}", f"output_dir={folder}"]
                        ov += [f"tasks.{t}.labels={s.labels}" for t in tasks if s.labels]
                        ov += [
                            f"++tasks.{t}.split.max_rows.train={budget}" for t in tasks if budget is not None
                        ]
                        ov += [f"init_from={pre.folder / 'checkpoint'}"] if pre else []
                        if fold is not None and s.gold != "none":  # weak labels + gold rows outside the fold
                            ov += [f"gold.mode={s.gold}", f"gold.folds={k}", f"gold.fold={fold}"]
                        elif fold is not None:  # the gold labels of the dev rows outside the fold alone
                            for t in tasks:
                                ov += [f"tasks.{t}.labels=gold", f"tasks.{t}.split.dev_folds={k}"]
                                ov += [f"tasks.{t}.split.dev_fold={fold}"]
                        ov += list(s.overrides)
                        ov += [f"tasks.{t}.{o}" for t in tasks for o in s.task_overrides]
                        ov = merge_overrides(ov, tasks)
                        cells.append(Cell(name, seed, budget, tasks, ov, folder, pre, fold=fold))
    return cells


def versions() -> dict[str, str]:
    """The versions a result depends on."""
    out = {"python": platform.python_version()}
    for pkg in ("mtl", "torch", "transformers", "datasets", "accelerate", "numpy"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def run_cell(cell: Cell, run: Runner, force: bool, keep_checkpoint: bool) -> dict[str, Any]:
    """Run a cell, or reuse its ``cell.json`` if that finished with the same overrides (a benchmark config
    edited since reruns the cells it changes); never raises for a failed run."""
    record = cell.folder / "cell.json"
    if record.exists() and not force:
        done = json.loads(record.read_text())
        if done.get("status") == "ok":
            if done.get("overrides") == cell.overrides:
                cell.result = done
                return {**done, "reused": True}
            log.info("cell %s: its overrides changed since it ran; running it again", cell.folder)
    if cell.pretrain is not None and cell.pretrain.result.get("status") != "ok":
        error = f"its pretraining run ({cell.pretrain.folder}) failed"
        cell.result = {"status": "failed", "error": error}
    else:
        start = time.perf_counter()
        try:
            report = run(cell.overrides)
            cell.result = {"status": "ok", **report}
        except Exception as e:  # a failed cell is reported, never dropped
            log.error("cell %s failed: %s", cell.folder, e)
            tail = traceback.format_exc().strip().splitlines()[-3:]
            cell.result = {"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": tail}
        cell.result["wall_seconds"] = round(time.perf_counter() - start, 1)
        gc.collect()
    cell.result |= {
        "setup": cell.setup,
        "seed": cell.seed,
        "budget": cell.budget,
        "tasks": cell.tasks,
        "overrides": cell.overrides,
        "versions": versions(),
    }
    cell.folder.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(cell.result, indent=2, default=float))
    if not keep_checkpoint and cell.setup != "pretrain":
        shutil.rmtree(cell.folder / "checkpoint", ignore_errors=True)
        if cell.result["status"] == "ok":  # a finetune's weak stage, self-training's earlier rounds
            for stage in [
                *cell.folder.glob("**/weak_stage/checkpoint"),
                *cell.folder.glob("**/round*/checkpoint"),
            ]:
                shutil.rmtree(stage, ignore_errors=True)
    return cell.result


def _stats(values: list[float]) -> dict[str, float]:
    n = len(values)
    mean = statistics.mean(values) if n else math.nan
    return {"mean": mean, "std": statistics.stdev(values) if n > 1 else 0.0, "n": n}


def summarise(spec: BenchSpec, cells: list[Cell], out: Path, size: str = "full") -> list[dict[str, Any]]:
    """Rows of the results table (setup, budget, task or ``mean``, mean/std/n over seeds, failures);
    writes ``results.md``, ``results.csv`` and ``results.json`` into ``out``. A setup whose runs trained
    on weak labels gets a second row, ``<setup>: label model alone``: the label model's own test metric
    in those runs (``label_model`` of their reports); one with ``gold.mode=finetune`` a third,
    ``<setup>: weak-label stage``: its first stage's model, before the gold rows."""
    rows = []
    for name, s in spec.setups.items():
        k = dev_folds(spec, name, size)
        k = min(k, spec.folds_per_seed or k)  # the folds each seed runs
        for budget in s.budgets or [None]:
            mine = [c for c in cells if c.setup == name and c.budget == budget]
            rows += _rows(
                name, name, budget, s.tasks, mine, k, lambda r, t: r["metrics"]["test"][t]["metric"]
            )
            if any(c.result.get("label_model") for c in mine):
                alone = _rows(
                    f"{name}: label model alone",
                    name,
                    budget,
                    s.tasks,
                    mine,
                    k,
                    lambda r, t: r["label_model"][t]["test"],
                )
                rows += [r for r in alone if r["n"] or r["task"] == "mean"]
            if any(c.result.get("weak_stage") for c in mine):  # gold.mode=finetune: before the gold rows
                stage = _rows(
                    f"{name}: weak-label stage",
                    name,
                    budget,
                    s.tasks,
                    mine,
                    k,
                    lambda r, t: r["weak_stage"]["test"][f"{t}/test"]["before"],
                )
                rows += [r for r in stage if r["n"] or r["task"] == "mean"]
    runs = {c.folder: c for c in cells} | {c.pretrain.folder: c.pretrain for c in cells if c.pretrain}
    seconds = sum(float(c.result.get("wall_seconds", 0.0)) for c in runs.values())
    n_pre = sum(c.setup == "pretrain" for c in runs.values())
    pre = f"{n_pre} pretraining run" + "s" * (n_pre != 1)
    compute = (
        f"Compute: {len(runs) - n_pre} cells and {pre}, {seconds / 60:.1f} min of wall time in all "
        "(the sum of each run's own, from its cell.json; a reused cell counts the time it took)."
    )
    slices = slice_report(spec, cells) if spec.slice_report else ""
    _write_tables(spec, rows, out, size, compute, slices)
    return rows


def _rows(
    setup: str,
    of: str,
    budget: int | None,
    tasks: Sequence[str],
    cells: list[Cell],
    folds: int,
    score: Callable[[dict[str, Any], str], float],
) -> list[dict[str, Any]]:
    """One setup's rows (``of``: the benchmark setup they come from): per task and the mean over tasks,
    mean/std/n over seeds of ``score(report, task)``. A cross-fitted setup's seed scores the mean over
    its folds' models, all folds or none; a task a report has no score for is left out."""
    by_seed: dict[int, dict[str, list[float]]] = {}
    failed: dict[str, list[str]] = {}
    for c in cells:
        for t in c.tasks:
            if c.result.get("status") == "ok":
                try:
                    value = float(score(c.result, t))
                except KeyError:  # no score of this kind for this task
                    continue
                by_seed.setdefault(c.seed, {}).setdefault(t, []).append(value)
            else:
                where = f"seed {c.seed}" + ("" if c.fold is None else f" fold {c.fold}")
                failed.setdefault(t, []).append(f"{where}: {c.result.get('error', '?')}")
    per_seed = {
        seed: {t: statistics.mean(v) for t, v in by_task.items() if len(v) == max(folds, 1)}
        for seed, by_task in by_seed.items()
    }
    rows = []
    for t in tasks:
        vals = [m[t] for m in per_seed.values() if t in m]
        rows.append(
            {
                "setup": setup,
                "of": of,
                "budget": budget,
                "task": t,
                **_stats(vals),
                "failed": failed.get(t, []),
            }
        )
    complete = [statistics.mean(m[t] for t in tasks) for m in per_seed.values() if len(m) == len(tasks)]
    all_failed = sorted({f for fs in failed.values() for f in fs})
    rows.append(
        {"setup": setup, "of": of, "budget": budget, "task": "mean", **_stats(complete), "failed": all_failed}
    )
    return rows


def _slice_score(spec: BenchSpec, task_metrics: dict[str, Any], sm: dict[str, Any]) -> float:
    """A slice's score: accuracy with ``slice_metric=accuracy`` or where the task's metric is F1 of
    class 1, else the task's metric."""
    by_accuracy = spec.slice_metric == SliceMetric.accuracy or task_metrics["metric_name"] == "f1"
    return float(sm["accuracy"] if by_accuracy else sm["metric"])


def _slice_scores(spec: BenchSpec, cells: list[Cell], setup: str) -> dict[int, dict[str, Any]]:
    """Per seed of a setup (all rows, no budgets): the overall test score per task and the score of
    each critical slice (test rows >= ``min_slice_n``), keyed ``task/slice``, with its size; scored as
    ``slice_metric`` says."""
    out: dict[int, dict[str, Any]] = {}
    overall = "accuracy" if spec.slice_metric == SliceMetric.accuracy else "metric"
    for c in cells:
        if c.setup != setup or c.budget is not None or c.result.get("status") != "ok":
            continue
        seed = out.setdefault(c.seed, {"overall": {}, "slices": {}, "sizes": {}})
        for task, m in c.result["metrics"]["test"].items():
            seed["overall"][task] = float(m[overall])
            for sl, sm in m.get("slices", {}).items():
                if sm["n"] >= spec.min_slice_n:
                    seed["slices"][f"{task}/{sl}"] = _slice_score(spec, m, sm)
                    seed["sizes"][f"{task}/{sl}"] = int(sm["n"])
    return out


def _summary(seed: dict[str, Any]) -> dict[str, float]:
    """One seed's overall mean, mean over its critical slices, and mean over tasks of the worst one."""
    worst: dict[str, float] = {}
    for key, v in seed["slices"].items():
        task = key.split("/", 1)[0]
        worst[task] = min(v, worst.get(task, v))
    return {
        "overall": statistics.mean(seed["overall"].values()) if seed["overall"] else math.nan,
        "slices": statistics.mean(seed["slices"].values()) if seed["slices"] else math.nan,
        "worst": statistics.mean(worst.values()) if worst else math.nan,
    }


def slice_report(spec: BenchSpec, cells: list[Cell]) -> str:
    """Markdown: per setup (all rows, no budgets) the overall test metric, the mean over critical slices
    (test rows >= ``min_slice_n``) and the worst critical slice per task (mean over tasks), each as mean
    ± std over seeds, and the change against the setup it is compared to (``compare_to``, else the
    first setup): per figure the mean over seeds of the per-seed difference, and how many critical
    slices improved; then each critical slice's test score per setup."""
    per, sizes = _critical_slices(spec, cells)
    if not sizes:
        return f"No slice with at least {spec.min_slice_n} test rows."
    first = next(iter(per))
    lines = [
        f"Critical slices: test rows >= {spec.min_slice_n}; {_scored_by(spec)}. Mean ± std over seeds; "
        "changes (Δ) against the setup in `vs`, seed by seed.",
        "",
        "| setup | vs | overall | Δ overall | critical slices: mean | Δ | improved | worst per task | Δ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, seeds in per.items():
        base_name = spec.setups[name].compare_to or first
        base = per.get(base_name, {})
        mine = {seed: _summary(v) for seed, v in seeds.items()}
        cols = []
        for key in ("overall", "slices", "worst"):
            cols.append(_pm([m[key] for m in mine.values()]))
            both = [mine[sd][key] - _summary(base[sd])[key] for sd in mine if sd in base]
            cols.append(f"{statistics.mean(both):+.4f}" if both and name != base_name else "")
            if key == "slices":
                keys = {k for s in seeds.values() for k in s["slices"]} & {
                    k for s in base.values() for k in s["slices"]
                }
                up = sum(_slice_mean(seeds, k) > _slice_mean(base, k) for k in keys)
                cols.append(f"{up} of {len(keys)}" if name != base_name else "")
        lines.append(f"| {name} | {base_name if name != base_name else ''} | " + " | ".join(cols) + " |")
    setups = list(per)
    grid = ["", "| slice (test rows) | " + " | ".join(setups) + " |", "|---|" + "---|" * len(setups)]
    for key in sorted(sizes):
        row = []
        for name in setups:
            vals = [s["slices"][key] for s in per[name].values() if key in s["slices"]]
            row.append(f"{statistics.mean(vals):.4f}" if vals else "-")
        grid.append(f"| {key} ({sizes[key]}) | " + " | ".join(row) + " |")
    return "\n".join(lines + grid)


def _critical_slices(
    spec: BenchSpec, cells: list[Cell]
) -> tuple[dict[str, dict[int, dict[str, Any]]], dict[str, int]]:
    """Each setup's per-seed slice scores (setups with a finished cell) and every critical slice's test
    rows, keyed ``task/slice`` (empty: no critical slice)."""
    per = {name: _slice_scores(spec, cells, name) for name in spec.setups}
    per = {name: seeds for name, seeds in per.items() if seeds}
    sizes = {k: n for seeds in per.values() for s in seeds.values() for k, n in s["sizes"].items()}
    return per, sizes


def _scored_by(spec: BenchSpec) -> str:
    """How the slice report scores (``slice_metric``), in words."""
    if spec.slice_metric == SliceMetric.accuracy:
        return "all rows and every slice scored by accuracy (`bench.slice_metric=accuracy`)"
    return "each task's metric; a slice of a task scored by F1 of class 1 is scored by accuracy"


def _slice_mean(seeds: dict[int, dict[str, Any]], key: str) -> float:
    return statistics.mean(s["slices"][key] for s in seeds.values() if key in s["slices"])


def _pm(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    return f"{statistics.mean(values):.4f}" + (
        f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
    )


def _cell_text(r: dict[str, Any]) -> str:
    if r["n"] == 0:
        return f"failed ({len(r['failed'])})" if r["failed"] else "-"
    spread = f" ± {r['std']:.4f}" if r["n"] > 1 else ""  # no spread from one seed
    text = f"{r['mean']:.4f}{spread} (n={r['n']})"
    return text + (f", {len(r['failed'])} failed" if r["failed"] else "")


def _folds_note(spec: BenchSpec, size: str) -> str:
    """Which dev folds each seed of the cross-fitted setups ran (``folds_per_seed``)."""
    crossed = [name for name in spec.setups if dev_folds(spec, name, size)]
    if not crossed:
        return f"folds_per_seed={spec.folds_per_seed}: no setup is cross-fitted."
    seeds = spec.seeds if size == "full" else spec.quick_seeds
    runs = ", ".join(
        f"seed {sd}: fold " + " and ".join(str(f) for f in seed_folds(spec, crossed[0], size, sd))
        for sd in seeds
    )
    k = dev_folds(spec, crossed[0], size)
    return (
        f"Cross-fitted setups ran {spec.folds_per_seed} of their {k} dev folds per seed ({runs}); a seed "
        "scores the mean over its folds' models."
    )


def _write_tables(
    spec: BenchSpec, rows: list[dict[str, Any]], out: Path, size: str, compute: str, slices: str = ""
) -> None:
    tasks = list(dict.fromkeys(r["task"] for r in rows if r["task"] != "mean"))
    lines = [
        f"# mtl-bench {spec.name} ({size}): test metric, mean ± std over seeds (n = seeds that finished)",
        "",
        *([QUICK_NOTE, ""] if size == "quick" else []),
        *([_folds_note(spec, size), ""] if spec.folds_per_seed else []),
        "| setup | budget | " + " | ".join(tasks) + " | mean over the setup's tasks |",
        "|---|---|" + "---|" * (len(tasks) + 1),
    ]
    keys = list(dict.fromkeys((r["setup"], r["budget"]) for r in rows))
    for setup, budget in keys:
        mine = {r["task"]: r for r in rows if r["setup"] == setup and r["budget"] == budget}
        cells = [_cell_text(mine[t]) if t in mine else "" for t in [*tasks, "mean"]]
        lines.append(f"| {setup} | {'all' if budget is None else budget} | " + " | ".join(cells) + " |")
    failures = [(r["setup"], r["budget"], f) for r in rows if r["task"] == "mean" for f in r["failed"]]
    if failures:
        lines += ["", "Failed cells:", *[f"- {s} @ {'all' if b is None else b}, {f}" for s, b, f in failures]]
    if slices:
        picture = "![each setup's test score per critical slice, mean ± std over seeds](slices.png)"
        lines += ["", "## Slices", "", slices, "", picture]
    lines += ["", compute]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    with open(out / "results.csv", "w") as f:
        f.write("setup,budget,task,mean,std,n,failed\n")
        for r in rows:
            budget = "all" if r["budget"] is None else r["budget"]
            f.write(f"{r['setup']},{budget},{r['task']},{r['mean']},{r['std']},{r['n']},{len(r['failed'])}\n")
    (out / "results.json").write_text(json.dumps(rows, indent=2, default=float))


def plots(spec: BenchSpec, rows: list[dict[str, Any]], cells: list[Cell], out: Path) -> list[Path]:
    """``setups.png`` (each setup's test metric per task, error bars: std over seeds), for setups with
    budgets ``budgets.png`` (metric against the number of training rows) and, with ``slice_report``,
    ``slices.png`` (``slice_picture``)."""
    written = []
    plain = [
        r for r in rows if r["budget"] is None and not spec.setups[r["of"]].budgets and r["task"] != "mean"
    ]
    if plain:
        setups = list(dict.fromkeys(r["setup"] for r in plain))
        tasks = list(dict.fromkeys(r["task"] for r in plain))
        fig = Figure(figsize=(max(6.0, 1.2 * len(setups) * max(1, len(tasks)) / 2), 4))
        ax = fig.subplots()
        width = 0.8 / len(tasks)
        for j, t in enumerate(tasks):
            xs, ys, es = [], [], []
            for i, s in enumerate(setups):
                r = next((r for r in plain if r["setup"] == s and r["task"] == t), None)
                if r and r["n"]:
                    xs.append(i + j * width)
                    ys.append(r["mean"])
                    es.append(r["std"])
            ax.bar(xs, ys, width, yerr=es, label=t, capsize=3)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(setups))], setups, rotation=20, ha="right")
        written.append(_save(fig, ax, f"mtl-bench {spec.name}", out / "setups.png"))
    curves = [r for r in rows if spec.setups[r["of"]].budgets and r["task"] != "mean" and r["n"]]
    if curves:
        fig = Figure(figsize=(6, 4))
        ax = fig.subplots()
        for setup, task in dict.fromkeys((r["setup"], r["task"]) for r in curves):
            pts = sorted(
                (_rows_trained(cells, setup, r["budget"], task), r["mean"], r["std"])
                for r in curves
                if r["setup"] == setup and r["task"] == task
            )
            ax.errorbar(
                [p[0] for p in pts],
                [p[1] for p in pts],
                yerr=[p[2] for p in pts],
                marker="o",
                capsize=3,
                label=f"{setup} ({task})",
            )
        ax.set_xscale("log")
        ax.set_xlabel("training rows (log scale)")
        written.append(_save(fig, ax, f"mtl-bench {spec.name}: label budget", out / "budgets.png"))
    if spec.slice_report and (picture := slice_picture(spec, cells, out / "slices.png")):
        written.append(picture)
    return written


def slice_picture(spec: BenchSpec, cells: list[Cell], path: Path) -> Path | None:
    """``path`` (PNG): per task, the test metric of all rows and of each critical slice (test rows >=
    ``min_slice_n``), one marker per setup at its mean over seeds with the std over seeds as error bar,
    so that the slices a setup lifts or leaves behind show at a glance. None when no setup has a
    critical slice."""
    per, sizes = _critical_slices(spec, cells)
    if not sizes:
        return None
    pairs = sorted(tuple(k.split("/", 1)) for k in sizes)
    tasks = list(dict.fromkeys(t for t, _ in pairs))
    rows = {t: ["(all)", *(sl for u, sl in pairs if u == t)] for t in tasks}
    heights = [len(r) for r in rows.values()]
    height = 1.0 + 0.3 * sum(heights) * max(1, len(per)) ** 0.5 + 0.6 * len(tasks)
    fig = Figure(figsize=(7.5, height), layout="constrained")  # room for the title and the legend
    axes = fig.subplots(len(tasks), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    step = 0.7 / len(per)
    for ax, task in zip(axes, tasks, strict=True):
        for j, (name, seeds) in enumerate(per.items()):
            ys, xs, es = [], [], []
            for i, sl in enumerate(rows[task]):
                vals = [
                    s["overall"][task] if sl == "(all)" else s["slices"][f"{task}/{sl}"]
                    for s in seeds.values()
                    if (task in s["overall"] if sl == "(all)" else f"{task}/{sl}" in s["slices"])
                ]
                if vals:
                    ys.append(i - 0.35 + step * (j + 0.5))
                    xs.append(statistics.mean(vals))
                    es.append(statistics.stdev(vals) if len(vals) > 1 else 0.0)
            ax.errorbar(xs, ys, xerr=es, fmt="o", markersize=4, capsize=2, label=name)
        names = [sl if sl == "(all)" else f"{sl} (n={sizes[f'{task}/{sl}']})" for sl in rows[task]]
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_ylim(len(names) - 0.5, -0.5)
        ax.grid(axis="x", alpha=0.3)
        score = "accuracy" if spec.slice_metric == SliceMetric.accuracy else "metric"
        ax.set_title(f"{task}: test {score}, mean ± std over seeds", fontsize=9)
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(
        f"mtl-bench {spec.name}: critical slices (test rows >= {spec.min_slice_n})\n({_scored_by(spec)})",
        fontsize=9,
    )
    fig.savefig(path, dpi=110)
    return path


def _save(fig: Figure, ax: Any, title: str, path: Path) -> Path:
    ax.set_ylabel("test metric")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)  # a bare Figure (no pyplot): no global state, no GUI backend
    return path


def _rows_trained(cells: list[Cell], setup: str, budget: int | None, task: str) -> int:
    """The train rows a budget cell really had (``all`` is the split's size)."""
    for c in cells:
        if c.setup == setup and c.budget == budget and c.result.get("status") == "ok":
            return int(c.result["sizes"][task]["train"])
    return budget or 0
