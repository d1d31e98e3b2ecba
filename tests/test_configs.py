"""Every shipped config composes against the typed schema; mistakes fail at compose time by name."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mtl.bench import expand, validate
from mtl.cli import resolved, run_tasks
from mtl.cli.evaluate import checkpoint_task_options
from mtl.config import CONF_DIR, BenchSpec, Metric, TaskConfig, check_config, shipped_tasks
from mtl.resume import RUN_CONFIG, resume_config
from mtl.task import Task
from mtl.types import MtlError

TASKS = shipped_tasks()
TASK_SETS = sorted(p.stem for p in (CONF_DIR / "tasks").glob("*.yaml") if p.stem not in TASKS)
GROUP_OPTIONS = {
    g: sorted(p.stem for p in (CONF_DIR / g).glob("*.yaml"))
    for g in ("encoder", "trainer", "experiment", "paths")
}


def _compose(name: str, overrides: list[str]):  # type: ignore[no-untyped-def]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(config_name=name, overrides=overrides)


def test_task_files_are_keyed_by_their_name() -> None:
    assert len(TASKS) >= 14
    for name in TASKS:
        data = yaml.safe_load((CONF_DIR / "tasks" / f"{name}.yaml").read_text())
        assert list(data) == [name], f"conf/tasks/{name}.yaml must have the single top-level key {name!r}"


def test_task_sets_select_tasks() -> None:
    assert TASK_SETS == ["tweets"]
    tweets = [t for t in TASKS if t.startswith("tweets_")]
    assert sorted(_compose("train", ["tasks=[tweets]"]).tasks) == tweets
    # the default task list of mtl-train and mtl-label is that one set, written once
    assert sorted(_compose("train", []).tasks) == sorted(_compose("label", []).tasks) == tweets
    assert list(_compose("train", ["tasks=[tweets,sms]"]).tasks)[-1] == "sms"


@pytest.mark.parametrize("task", TASKS)
def test_every_task_composes_and_resolves(task: str) -> None:
    cfg = _compose("train", [f"tasks=[{task}]"])
    tasks = run_tasks(cfg)
    assert list(tasks) == [task]
    assert isinstance(tasks[task], Task) and isinstance(tasks[task].config, TaskConfig)
    assert isinstance(tasks[task].config.metric, Metric)
    assert "${" not in tasks[task].config.source.path
    assert tasks[task].num_slices == len(tasks[task].sfs)  # its SF file (if any) loads


@pytest.mark.parametrize("option", GROUP_OPTIONS["trainer"])
def test_every_target_instantiates(option: str) -> None:
    """Every ``_target_`` of a shipped trainer builds its object (the optimizer, from a partial)."""
    cfg = _compose("train", [f"trainer={option}"])
    optimizer = instantiate(cfg.trainer.optimizer)([torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(optimizer, torch.optim.Optimizer)
    assert optimizer.param_groups[0]["lr"] == cfg.trainer.optimizer.lr


def test_debug_trainer_inherits_the_default() -> None:
    default = OmegaConf.to_container(_compose("train", []).trainer)
    debug = OmegaConf.to_container(_compose("train", ["trainer=debug"]).trainer)
    assert isinstance(default, dict) and isinstance(debug, dict)
    changed = {k for k in default if debug[k] != default[k]}
    assert changed == {
        "epochs",
        "batch_size",
        "eval_batch_size",
        "optimizer",
        "early_stopping_patience",
        "max_steps",
        "log_every_steps",
    }
    assert debug["optimizer"]["weight_decay"] == default["optimizer"]["weight_decay"]


def test_paths_are_set_once_for_every_command() -> None:
    roots = {
        n: _compose(n, ["checkpoint=x"] if n == "eval" else [])
        for n in ("train", "eval", "label", "benchmark")
    }
    assert len({(c.data_root, c.cache_dir) for c in roots.values()}) == 1
    for n in roots:
        assert "data_root:" not in (CONF_DIR / f"{n}.yaml").read_text()


def test_a_bad_choice_fails_at_compose_time_naming_the_key() -> None:
    with pytest.raises(ConfigCompositionException) as e:
        _compose("train", ["tasks=[sms]", "tasks.sms.head.type=fancy"])
    assert "tasks.sms.head.type" in str(e.value.__cause__ or e.value) and "slice_aware" in str(
        e.value.__cause__
    )
    with pytest.raises(ConfigCompositionException, match=r"trainer\.sampling"):
        _compose("train", ["trainer.sampling=random"])


@pytest.mark.parametrize(("group", "option"), [(g, o) for g, opts in GROUP_OPTIONS.items() for o in opts])
def test_every_group_option_composes(group: str, option: str) -> None:
    cfg = _compose("train", [f"{group}={option}"])
    OmegaConf.to_object(cfg)  # resolves every interpolation and validates against the schema


def test_experiment_files_say_how_to_run_them() -> None:
    for option in GROUP_OPTIONS["experiment"]:
        lines = (CONF_DIR / "experiment" / f"{option}.yaml").read_text().splitlines()
        assert lines[0] == "# @package _global_"  # a directive Hydra only reads at the very top
        assert lines[1].startswith("#") and f"experiment={option}" in lines[1]


def test_task_set_list_syntax_and_experiments() -> None:
    assert list(_compose("train", ["tasks=[youtube,sms]"]).tasks) == ["youtube", "sms"]
    assert list(_compose("train", ["experiment=spam"]).tasks) == ["youtube", "sms"]
    assert len(_compose("train", []).tasks) == 6


@pytest.mark.parametrize("name", ["eval", "predict"])
def test_other_root_configs_compose(name: str) -> None:
    cfg = _compose(name, ["checkpoint=somewhere"])
    assert cfg.checkpoint == "somewhere"


def test_mistyped_key_fails_naming_it() -> None:
    with pytest.raises(ConfigCompositionException, match="lerning_rate"):
        _compose("train", ["trainer.lerning_rate=0.1"])
    with pytest.raises(ConfigCompositionException, match="lable_names"):
        _compose("train", ["tasks=[sms]", "tasks.sms.lable_names=[a,b]"])


def test_wrong_type_fails_naming_key() -> None:
    with pytest.raises(ConfigCompositionException, match="epochs"):
        _compose("train", ["trainer.epochs=many"])


def test_unknown_task_is_named() -> None:
    with pytest.raises(MissingConfigException, match="Could not load 'tasks/nosuchtask'"):
        _compose("train", ["tasks=[youtube,nosuchtask]"])


def test_user_task_file_in_an_extra_search_path(tmp_path: Path) -> None:
    """A new task on a user's CSV is one YAML file in their own config folder, no Python."""
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "mine.yaml").write_text(
        "mine:\n  label_names: [neg, pos]\n  source: {format: csv, path: /data/mine.csv, text_field: body}\n"
    )
    cfg = _compose("train", [f"hydra.searchpath=[file://{tmp_path}]", "tasks=[mine,sms]"])
    tasks = run_tasks(cfg)
    assert tasks["mine"].config.source.text_field == "body" and tasks["mine"].label_names == ["neg", "pos"]


BENCHES = sorted(p.stem for p in (CONF_DIR / "bench").glob("*.yaml"))


@pytest.mark.parametrize("bench", BENCHES)
def test_every_benchmark_composes_validates_and_expands(bench: str, tmp_path: Path) -> None:
    cfg = _compose("benchmark", [f"bench={bench}"])
    spec = OmegaConf.to_object(cfg.bench)
    assert isinstance(spec, BenchSpec) and spec.name == bench
    validate(spec, TASKS)
    lines = (CONF_DIR / "bench" / f"{bench}.yaml").read_text().splitlines()
    assert f"mtl-bench bench={bench}" in lines[0]
    for size in ("full", "quick"):
        cells = expand(spec, size, tmp_path, [])
        assert {c.setup for c in cells} == set(spec.setups)
        for cell in {c.setup: c for c in reversed(cells)}.values():  # a cell of each setup composes
            train = _compose("train", [o for o in cell.overrides if not o.startswith("init_from")])
            assert list(train.tasks) == cell.tasks


def test_every_numeric_key_is_range_checked_before_any_work() -> None:
    cfg = _compose("train", ["trainer.batch_size=0", "trainer.warmup_ratio=2", "gold.folds=1"])
    with pytest.raises(MtlError) as err:
        check_config(cfg)
    assert str(err.value) == (
        "out of range: trainer.batch_size=0 (must be >= 1), trainer.warmup_ratio=2.0 (must be in [0, 1]), "
        "gold.folds=1 (must be >= 2)"
    )
    check_config(_compose("train", []))  # the shipped defaults are in range
    with pytest.raises(MtlError, match=r"^out of range: batch_size=0 \(must be >= 1\)$"):
        check_config(_compose("predict", ["checkpoint=x", "batch_size=0"]))
    with pytest.raises(MtlError, match=r"^trainer.optimizer._target_ 'torch.optim.Nosuch' cannot be"):
        check_config(_compose("train", ["trainer.optimizer._target_=torch.optim.Nosuch"]))
    with pytest.raises(MtlError, match=r"^checkpoint is required: pass checkpoint=\.\.\.$"):
        check_config(_compose("eval", []))
    task = _compose("train", ["tasks=[sms]", "tasks.sms.head.dropout=1.0", "tasks.sms.split.dev=-0.1"])
    with pytest.raises(MtlError, match=r"task 'sms': out of range: split.dev=-0.1 \(must be in \[0, 1\)\), "):
        run_tasks(task)


def test_resume_takes_the_runs_saved_config_and_refuses_a_changed_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    first = _compose("train", ["tasks=[youtube]", "encoder=tiny", "trainer=debug", f"output_dir={run}"])
    run.mkdir()
    (run / RUN_CONFIG).write_text(json.dumps(resolved(first)))
    given = ["resume=true", f"output_dir={run}"]
    again = resume_config(_compose("train", given), given)  # the run folder alone
    assert (
        again.resume
        and list(again.tasks) == ["youtube"]
        and again.trainer.max_steps == first.trainer.max_steps
    )
    assert OmegaConf.to_object(again.encoder) == OmegaConf.to_object(first.encoder)  # typed as before
    assert isinstance(OmegaConf.to_object(again.tasks.youtube), TaskConfig)
    same = [*given, "tasks=[youtube]", "encoder=tiny", "experiment=spam"]  # the original command retyped
    with caplog.at_level(logging.INFO):
        resume_config(_compose("train", same), same, logging.getLogger("t"))
    assert "experiment=spam ignored: the run's saved config" in caplog.text
    changed = [*given, "trainer.batch_size=7", "seed=3"]
    with pytest.raises(
        MtlError, match=r"these overrides change it: trainer.batch_size \(given 7, the run had 8\); seed"
    ):
        resume_config(_compose("train", changed), changed)
    with pytest.raises(MtlError, match=r"resume=true: nothing to resume in .*nowhere \(no run_config.json"):
        resume_config(_compose("train", [f"output_dir={tmp_path / 'nowhere'}"]), [])


def test_eval_composes_a_checkpoints_own_task_without_its_search_path(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    (ckpt / "heads").mkdir(parents=True)
    (ckpt / "model.json").write_text(json.dumps({"format_version": 1, "tasks": ["agnews"]}))
    task = {"label_names": ["world", "sports"], "source": {"format": "csv", "path": "/data/ag.csv"}}
    (ckpt / "heads" / "agnews.json").write_text(json.dumps({"config": task}))
    with pytest.raises(MissingConfigException):
        _compose("eval", [f"checkpoint={ckpt}", "tasks=[agnews]"])
    assert checkpoint_task_options(["x=1", f"checkpoint={ckpt}"]) == ["agnews"]
    cfg = _compose("eval", [f"checkpoint={ckpt}", "tasks=[agnews,sms]"])
    assert run_tasks(cfg)["agnews"].label_names == ["world", "sports"] and list(cfg.tasks) == [
        "agnews",
        "sms",
    ]
    assert checkpoint_task_options([f"checkpoint={tmp_path / 'nope'}"]) == []  # mtl-eval names it later


def test_bench_tasks_names_the_task_set_of_a_generic_benchmark(tmp_path: Path) -> None:
    cfg = _compose("benchmark", ["bench=weak_vs_gold", "bench.tasks=[youtube,sms]"])
    spec = OmegaConf.to_object(cfg.bench)
    assert isinstance(spec, BenchSpec)
    assert all(s.tasks == ["youtube", "sms"] for s in spec.setups.values())
    assert cfg.output_dir == "outputs/bench/weak_vs_gold/youtube+sms/full"
    assert _compose("benchmark", ["bench=spam"]).output_dir == "outputs/bench/spam/full"
    cells = expand(spec, "full", tmp_path, [])
    gold = [c for c in cells if c.setup == "gold_dev_only" and c.seed == 0]
    assert [c.fold for c in gold] == [0, 1, 2, 3, 4]
    assert {"tasks.youtube.split.dev_fold=3", "tasks.sms.split.dev_fold=3", "tasks.sms.labels=gold"} <= set(
        gold[3].overrides
    )
