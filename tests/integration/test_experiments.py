"""Every shipped experiment runs end to end: two optimizer steps on the tiny encoder, small splits."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from mtl.cli.train import train
from mtl.config import CONF_DIR, PROJECT_ROOT

DATA = PROJECT_ROOT.parent / "shared" / "data"
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DATA / "wrench" / "sms").exists(), reason=f"real data not found at {DATA}"),
]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_smoke_run(experiment: str, tmp_path: Path) -> None:
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        tasks = list(compose("train", [f"experiment={experiment}"]).tasks)
        caps = [f"++tasks.{t}.split.max_rows.{s}={n}" for t in tasks for s, n in (("train", 64), ("dev", 32))]
        cfg = compose(
            "train",
            [
                f"experiment={experiment}",
                "encoder=tiny",
                "trainer=debug",
                "trainer.max_steps=2",
                f"output_dir={tmp_path / 'run'}",
                f"cache_dir={tmp_path / 'cache'}",
                *caps,
            ],
        )
    report = train(cfg, echo=False)
    assert report["steps"] == 2 and set(report["metrics"]["test"]) == set(tasks)
    assert all(report["sizes"][t]["train"] <= 64 and report["sizes"][t]["dev"] <= 32 for t in tasks)
    assert (tmp_path / "run" / "checkpoint" / "model.json").exists()
