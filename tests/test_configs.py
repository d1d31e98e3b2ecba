"""Every shipped config composes against the typed schema; mistakes fail at compose time by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from mtl.config import CONF_DIR, TaskConfig
from mtl.runs import task_configs

TASKS = sorted(p.stem for p in (CONF_DIR / "tasks").glob("*.yaml"))
GROUP_OPTIONS = {
    g: sorted(p.stem for p in (CONF_DIR / g).glob("*.yaml")) for g in ("encoder", "trainer", "experiment")
}


def _compose(name: str, overrides: list[str]):  # type: ignore[no-untyped-def]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(config_name=name, overrides=overrides)


def test_task_files_are_keyed_by_their_name() -> None:
    assert len(TASKS) >= 13
    for name in TASKS:
        data = yaml.safe_load((CONF_DIR / "tasks" / f"{name}.yaml").read_text())
        assert list(data) == [name], f"conf/tasks/{name}.yaml must have the single top-level key {name!r}"


@pytest.mark.parametrize("task", TASKS)
def test_every_task_composes_and_resolves(task: str) -> None:
    cfg = _compose("train", [f"tasks=[{task}]"])
    tasks = task_configs(cfg)
    assert list(tasks) == [task]
    assert isinstance(tasks[task], TaskConfig)
    assert tasks[task].metric in ("accuracy", "f1", "macro_f1")
    assert "${" not in tasks[task].source.path


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
    tasks = task_configs(cfg)
    assert tasks["mine"].source.text_field == "body" and tasks["mine"].label_names == ["neg", "pos"]


BENCHES = sorted(p.stem for p in (CONF_DIR / "bench").glob("*.yaml"))


@pytest.mark.parametrize("bench", BENCHES)
def test_every_benchmark_composes_validates_and_expands(bench: str, tmp_path: Path) -> None:
    from mtl.bench import expand, validate
    from mtl.config import BenchSpec

    cfg = _compose("benchmark", [f"bench={bench}"])
    spec = OmegaConf.to_object(cfg.bench)
    assert isinstance(spec, BenchSpec) and spec.name == bench
    validate(spec, TASKS)
    lines = (CONF_DIR / "bench" / f"{bench}.yaml").read_text().splitlines()
    assert f"mtl-bench bench={bench}" in lines[0]
    for size in ("full", "quick"):
        cells = expand(spec, size, tmp_path, [])
        assert {c.setup for c in cells} == set(spec.setups)
        for cell in cells[:3]:  # each cell's overrides compose into a train config
            train = _compose("train", [o for o in cell.overrides if not o.startswith("init_from")])
            assert list(train.tasks) == cell.tasks
