"""mtl-bench: cells from a benchmark, reuse and failures, the results table (no training; the plots are
checked by tests/integration/test_bench.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mtl.bench import expand, merge_overrides, plots, run_cell, slice_picture, summarise, validate
from mtl.cli.bench import run as bench_cli
from mtl.config import BenchSpec, SetupConfig, SliceMetric
from mtl.types import MtlError

SPEC = BenchSpec(
    name="toy",
    seeds=[0, 1],
    common=["trainer.epochs=1"],
    quick=["encoder=tiny", "++tasks.a.split.max_rows.train=20", "++tasks.b.split.max_rows.train=20"],
    setups={
        "multi": SetupConfig(tasks=["a", "b"]),
        "single": SetupConfig(tasks=["a", "b"], single=True),
        "b_from_a": SetupConfig(
            tasks=["b"], pretrain=["a"], labels="weak", overrides=["trainer.freeze_encoder=true"]
        ),
        "curve": SetupConfig(tasks=["b"], pretrain=["a"], budgets=[10, None]),
    },
)


def test_merge_overrides_last_wins_and_drops_other_tasks() -> None:
    merged = merge_overrides(["x=1", "++tasks.a.k=1", "tasks.b.k=2", "x=2", "tasks.a.k=3"], ["a"])
    assert merged == ["x=2", "++tasks.a.k=3"]


def test_expand_makes_one_cell_per_setup_seed_budget_and_task(tmp_path: Path) -> None:
    cells = expand(SPEC, "full", tmp_path, ["data_root=/d"])
    # multi 2 seeds + single 2 tasks x 2 seeds + b_from_a 2 + curve 2 budgets x 2 seeds
    assert len(cells) == 2 + 4 + 2 + 4
    single = [c for c in cells if c.setup == "single" and c.seed == 1]
    assert [c.tasks for c in single] == [["a"], ["b"]]
    assert single[0].folder == tmp_path / "cells" / "single" / "all" / "seed1" / "a"
    transfer = next(c for c in cells if c.setup == "b_from_a" and c.seed == 0)
    assert transfer.pretrain is not None and transfer.pretrain.tasks == ["a"]
    assert transfer.overrides == [
        "data_root=/d",
        "trainer.epochs=1",
        "tasks=[b]",
        "seed=0",
        f"output_dir={transfer.folder}",
        "tasks.b.labels=weak",
        f"init_from={tmp_path / 'pretrain' / 'a' / 'seed0' / 'checkpoint'}",
        "trainer.freeze_encoder=true",
    ]
    curve = [c for c in cells if c.setup == "curve" and c.seed == 0]
    assert curve[0].pretrain is transfer.pretrain  # one pretraining run per task set and seed
    assert "++tasks.b.split.max_rows.train=10" in curve[0].overrides
    quick = expand(SPEC, "quick", tmp_path, [])
    assert len(quick) == 6  # quick_seeds: [0]
    assert "++tasks.b.split.max_rows.train=10" in next(c for c in quick if c.budget == 10).overrides
    assert "++tasks.a.split.max_rows.train=20" not in next(c for c in quick if c.budget == 10).overrides


def test_validate_names_the_setup_and_the_task() -> None:
    validate(SPEC, ["a", "b"])
    transfer = BenchSpec(name="x", setups={"b_from_a": SPEC.setups["b_from_a"]})
    with pytest.raises(MtlError, match=r"setup 'b_from_a': pretrain names unknown tasks \['a'\]"):
        validate(transfer, ["b"])
    bad = BenchSpec(name="x", setups={"s": SetupConfig(tasks=["a"], labels="silver")})
    with pytest.raises(MtlError, match="setup 's': labels must be gold or weak"):
        validate(bad, ["a"])


def _fake_report(overrides: list[str]) -> dict[str, Any]:
    tasks = next(o for o in overrides if o.startswith("tasks="))[7:-1].split(",")
    seed = int(next(o for o in overrides if o.startswith("seed="))[5:])
    if "b" in tasks and any(o.startswith("init_from") for o in overrides) and seed == 1:
        raise RuntimeError("out of memory")
    metric = {"a": 0.8, "b": 0.6}
    return {
        "metrics": {"test": {t: {"metric": metric[t] + 0.1 * seed} for t in tasks}},
        "sizes": {t: {"train": 100} for t in tasks},
    }


def test_cells_run_reuse_fail_and_summarise(tmp_path: Path) -> None:
    cells = expand(SPEC, "full", tmp_path, [])
    calls: list[list[str]] = []

    def runner(ov: list[str]) -> dict[str, Any]:
        calls.append(ov)
        return _fake_report(ov)

    pre = {c.pretrain.key: c.pretrain for c in cells if c.pretrain}
    for cell in [*pre.values(), *cells]:
        run_cell(cell, runner, force=False, keep_checkpoint=False)
    assert len(calls) == 2 + len(cells)
    record = json.loads((cells[0].folder / "cell.json").read_text())
    assert record["status"] == "ok" and record["seed"] == 0 and record["versions"]["torch"]
    failed = json.loads((tmp_path / "cells" / "b_from_a" / "all" / "seed1" / "cell.json").read_text())
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: out of memory"
    # finished cells are reused; failed ones run again; force reruns everything
    calls.clear()
    for cell in cells:
        run_cell(cell, runner, force=False, keep_checkpoint=False)
    assert len(calls) == 3  # b_from_a seed 1, curve seed 1 (two budgets)
    # a cell whose overrides changed (the benchmark config was edited) runs again; force reruns any
    calls.clear()
    cells[0].overrides.append("trainer.min_steps=5")
    for cell in cells[:2]:
        run_cell(cell, runner, force=False, keep_checkpoint=False)
    assert calls == [cells[0].overrides]
    run_cell(cells[1], runner, force=True, keep_checkpoint=False)
    assert calls[1:] == [cells[1].overrides]
    for c in cells:  # the compute line sums the recorded wall times: 30 s a cell, 60 s a pretraining run
        c.result["wall_seconds"] = 30.0
        if c.pretrain:
            c.pretrain.result["wall_seconds"] = 60.0
    rows = summarise(SPEC, cells, tmp_path)
    by = {(r["setup"], r["budget"], r["task"]): r for r in rows}
    assert by[("multi", None, "a")]["mean"] == pytest.approx(0.85) and by[("multi", None, "a")]["n"] == 2
    assert by[("multi", None, "a")]["std"] == pytest.approx(0.0707, abs=1e-4)
    assert by[("multi", None, "mean")]["mean"] == pytest.approx(0.75)
    assert by[("b_from_a", None, "b")]["n"] == 1 and len(by[("b_from_a", None, "b")]["failed"]) == 1
    md = (tmp_path / "results.md").read_text()
    assert "| multi | all | 0.8500 ± 0.0707 (n=2) | 0.6500 ± 0.0707 (n=2) | 0.7500 ± 0.0707 (n=2) |" in md
    assert "| b_from_a | all |  | 0.6000 (n=1), 1 failed |" in md
    assert "- b_from_a @ all, seed 1: RuntimeError: out of memory" in md
    minutes = (len(cells) * 30 + 2 * 60) / 60
    assert f"Compute: {len(cells)} cells and 2 pretraining runs, {minutes:.1f} min of wall time in all" in md
    csv = (tmp_path / "results.csv").read_text().splitlines()
    assert csv[0] == "setup,budget,task,mean,std,n,failed" and "curve,10,b,0.6,0.0,1,1" in csv


def test_task_overrides_and_the_slice_report(tmp_path: Path) -> None:
    spec = BenchSpec(
        name="sl",
        seeds=[0, 1],
        slice_report=True,
        min_slice_n=20,
        setups={
            "plain": SetupConfig(tasks=["a"]),
            "aware": SetupConfig(tasks=["a"], task_overrides=["head.type=x"]),
        },
    )
    cells = expand(spec, "full", tmp_path, [])
    assert "tasks.a.head.type=x" in next(c for c in cells if c.setup == "aware").overrides

    def runner(ov: list[str]) -> dict[str, Any]:
        up = 0.1 if "tasks.a.head.type=x" in ov else 0.0
        seed = int(next(o for o in ov if o.startswith("seed="))[5:])
        slices = {
            "big": {"n": 50, "metric": 0.5 + up + 0.02 * seed, "accuracy": 0.8 + 0.02 * seed},
            "small": {"n": 10, "metric": 0.1, "accuracy": 0.0},  # under min_slice_n: not critical
            "hard": {"n": 30, "metric": 0.3 + up, "accuracy": 0.6 + up},
        }
        overall = 0.7 - up / 10  # the slice method costs a point overall
        a = {"metric": overall, "accuracy": 0.85, "metric_name": "macro_f1", "slices": slices}
        return {"metrics": {"test": {"a": a}}}

    for cell in cells:
        run_cell(cell, runner, force=False, keep_checkpoint=False)
    summarise(spec, cells, tmp_path)
    md = (tmp_path / "results.md").read_text().split("## Slices", 1)[1]
    assert "| plain |  | 0.7000 ± 0.0000 |  | 0.4050 ± 0.0071 |  |  | 0.3000 ± 0.0000 |  |" in md
    assert (
        "| aware | plain | 0.6900 ± 0.0000 | -0.0100 | 0.5050 ± 0.0071 | +0.1000 | 2 of 2 | "
        "0.4000 ± 0.0000 | +0.1000 |" in md
    )
    assert "| a/big (50) | 0.5100 | 0.6100 |" in md and "small" not in md
    assert "](slices.png)" in md
    picture = slice_picture(spec, cells, tmp_path / "slices.png")
    assert picture is not None and picture.read_bytes()[:4] == b"\x89PNG"
    none = slice_picture(replace(spec, min_slice_n=100), cells, tmp_path / "none.png")  # no critical slice
    assert none is None
    assert not (tmp_path / "none.png").exists()
    # the same cells scored by accuracy, all rows included: only the report changes
    summarise(replace(spec, slice_metric=SliceMetric.accuracy), cells, tmp_path)
    md = (tmp_path / "results.md").read_text().split("## Slices", 1)[1]
    assert "scored by accuracy (`bench.slice_metric=accuracy`)" in md
    assert "| plain |  | 0.8500 ± 0.0000 |  | 0.7050 ± 0.0071 |  |  | 0.6000 ± 0.0000 |  |" in md
    assert (
        "| aware | plain | 0.8500 ± 0.0000 | +0.0000 | 0.7550 ± 0.0071 | +0.0500 | 1 of 2 | "
        "0.7000 ± 0.0000 | +0.1000 |" in md
    )
    assert "| a/big (50) | 0.8100 | 0.8100 |" in md


def test_cross_fitted_gold_dev_setup(tmp_path: Path) -> None:
    spec = BenchSpec(name="cf", seeds=[0, 1], setups={"gold_dev_only": SetupConfig(tasks=["a"], dev_folds=3)})
    validate(spec, ["a"])
    cells = expand(spec, "full", tmp_path, [])
    assert [(c.seed, c.fold) for c in cells] == [(s, f) for s in (0, 1) for f in range(3)]
    assert cells[4].folder == tmp_path / "cells" / "gold_dev_only" / "all" / "seed1" / "fold1"
    assert {"tasks.a.labels=gold", "tasks.a.split.dev_folds=3", "tasks.a.split.dev_fold=1"} <= set(
        cells[4].overrides
    )

    def runner(ov: list[str]) -> dict[str, Any]:
        seed, fold = (
            int(next(o for o in ov if o.startswith(k))[len(k) :])
            for k in ("seed=", "tasks.a.split.dev_fold=")
        )
        if (seed, fold) == (1, 2):
            raise RuntimeError("fold 2 broke")
        return {"metrics": {"test": {"a": {"metric": 0.5 + 0.1 * fold}}}}

    for cell in cells:
        run_cell(cell, runner, force=False, keep_checkpoint=False)
    rows = summarise(spec, cells, tmp_path)
    a = next(r for r in rows if r["task"] == "a")
    assert a["mean"] == pytest.approx(0.6) and a["n"] == 1  # seed 0: mean of its 3 folds; seed 1 incomplete
    assert a["failed"] == ["seed 1 fold 2: RuntimeError: fold 2 broke"]
    for bad in (
        SetupConfig(tasks=["a"], dev_folds=1),
        SetupConfig(tasks=["a"], dev_folds=3, budgets=[10]),
        SetupConfig(tasks=["a"], dev_folds=3, labels="weak"),  # weak labels need gold: mix or finetune
        SetupConfig(tasks=["a"], dev_folds=3, labels="gold", gold="mix"),
    ):
        with pytest.raises(MtlError, match="dev_folds cross-fits on the dev split's gold labels"):
            validate(BenchSpec(name="cf", setups={"s": bad}), ["a"])
    with pytest.raises(MtlError, match=r"setup 's': gold=finetune trains on .* set dev_folds"):
        validate(BenchSpec(name="cf", setups={"s": SetupConfig(tasks=["a"], gold="finetune")}), ["a"])


def test_gold_in_training_setups_run_every_fold_with_gold_mode(tmp_path: Path) -> None:
    setups = {m: SetupConfig(tasks=["a", "b"], dev_folds=2, gold=m) for m in ("mix", "finetune")}  # type: ignore[misc]
    spec = BenchSpec(name="g", seeds=[0], setups=setups)
    validate(spec, ["a", "b"])
    cells = expand(spec, "full", tmp_path, [])
    assert [(c.setup, c.fold) for c in cells] == [("mix", 0), ("mix", 1), ("finetune", 0), ("finetune", 1)]
    assert {"gold.mode=finetune", "gold.folds=2", "gold.fold=1"} <= set(cells[3].overrides)
    assert not [o for o in cells[3].overrides if "labels=" in o or "dev_fold" in o]  # gold.* sets those

    def runner(ov: list[str]) -> dict[str, Any]:
        fold = int(next(o for o in ov if o.startswith("gold.fold="))[len("gold.fold=") :])
        test = {t: {"metric": 0.6 + 0.1 * fold} for t in ("a", "b")}
        report = {"metrics": {"test": test}, "label_model": {"a": {"dev": 0.5, "test": 0.4 + 0.1 * fold}}}
        if "gold.mode=finetune" in ov:  # the first stage's test metric, before the gold rows
            report["weak_stage"] = {"test": {"a/test": {"before": 0.3 + 0.1 * fold, "after": 0.6}}}
        return report

    for cell in cells:
        run_cell(cell, runner, force=False, keep_checkpoint=False)
    by = {(r["setup"], r["task"]): r for r in summarise(spec, cells, tmp_path)}
    assert by[("mix", "a")]["mean"] == pytest.approx(0.65)  # the mean of the two fold models
    assert by[("mix: label model alone", "a")]["mean"] == pytest.approx(0.45)  # the weak labels alone
    assert ("mix: label model alone", "b") not in by  # no label model for b: no row
    assert "| finetune: label model alone | all | 0.4500 (n=1) |" in (tmp_path / "results.md").read_text()
    assert by[("finetune: weak-label stage", "a")]["mean"] == pytest.approx(0.35)
    assert ("mix: weak-label stage", "a") not in by and ("finetune: weak-label stage", "b") not in by
    rows = summarise(spec, cells, tmp_path)
    assert [p.name for p in plots(spec, rows, cells, tmp_path)] == ["setups.png"]  # label-model rows plotted


def test_folds_per_seed_rotates_the_folds_over_seeds(tmp_path: Path) -> None:
    setups = {"gold_dev_only": SetupConfig(tasks=["a"], dev_folds=5), "plain": SetupConfig(tasks=["a"])}
    spec = BenchSpec(name="r", seeds=[7, 3, 9], folds_per_seed=2, setups=setups)
    cells = expand(spec, "full", tmp_path, [])
    crossed = [(c.seed, c.fold) for c in cells if c.setup == "gold_dev_only"]
    assert crossed == [(7, 0), (7, 1), (3, 2), (3, 3), (9, 4), (9, 0)]
    assert [(c.seed, c.fold) for c in cells if c.setup == "plain"] == [(7, None), (3, None), (9, None)]
    assert all("tasks.a.split.dev_folds=5" in c.overrides for c in cells if c.setup == "gold_dev_only")

    def runner(ov: list[str]) -> dict[str, Any]:
        fold = next((int(o.rpartition("=")[2]) for o in ov if o.startswith("tasks.a.split.dev_fold=")), 0)
        return {"metrics": {"test": {"a": {"metric": 0.5 + 0.1 * fold}}}}

    for cell in cells:
        run_cell(cell, runner, force=False, keep_checkpoint=False)
    rows = summarise(spec, cells, tmp_path)
    a = next(r for r in rows if r["setup"] == "gold_dev_only" and r["task"] == "a")
    assert a["n"] == 3 and a["mean"] == pytest.approx((0.55 + 0.75 + 0.7) / 3)  # each seed: its two folds
    md = (tmp_path / "results.md").read_text()
    runs = "seed 7: fold 0 and 1, seed 3: fold 2 and 3, seed 9: fold 4 and 0"
    assert f"ran 2 of their 5 dev folds per seed ({runs})" in md
    one = BenchSpec(name="r", seeds=[0, 1, 2], folds_per_seed=1, setups=setups)
    assert [c.fold for c in expand(one, "full", tmp_path, []) if c.setup == "gold_dev_only"] == [0, 1, 2]


def test_a_bad_value_on_the_command_line_says_what_is_allowed(capsys: pytest.CaptureFixture[str]) -> None:
    for overrides, why in (
        (["bench.slice_metric=f1"], "Invalid value 'f1', expected one of [task, accuracy]"),
        (["size=big"], "Invalid value 'big', expected one of [full, quick]"),
        (["bench.nokey=1"], "Key 'nokey' not in 'BenchSpec'"),
    ):
        with pytest.raises(SystemExit) as exit_:
            bench_cli(["bench=slices_sentiment", *overrides])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: mtl-bench bench=slices_sentiment {overrides[0]}: ") and why in err
