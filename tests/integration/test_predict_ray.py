"""``mtl-predict backend=ray``: the same rows as the local backend, a worker that dies once, a worker that
keeps dying (the shard named, no output), a cluster that cannot be reached.

One local Ray instance (2 CPUs) serves the module; each job starts its own actors (a few seconds each).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hydra import compose, initialize_config_dir

import mtl.predict
from mtl.checkpoint import save_checkpoint
from mtl.cli.predict import main
from mtl.config import CONF_DIR, EncoderConfig, RayConfig, SourceConfig, TaskConfig
from mtl.heads import build_head
from mtl.model import MultitaskModel, build_encoder
from mtl.predict import Probabilities, ShardPredictor
from mtl.ray_backend import connect

pytest.importorskip("ray")

TASKS = {
    "spam": TaskConfig(label_names=["ham", "spam"], source=SourceConfig(format="wrench", path="/x")),
    "topic": TaskConfig(label_names=["a", "b", "c"], source=SourceConfig(format="csv", path="/y.csv")),
}
WORDS = ["win", "cash", "now", "hello", "how", "are", "you", "today", "see", "lunch", "great", "video"]
TEXTS = [" ".join(WORDS[(i * 7) % len(WORDS) :][: 1 + i % 9]) if i % 5 else "" for i in range(40)]
TEXTS[15] = "crash here"  # shard 2 of 6-row shards (rows 13-18)


@pytest.fixture(scope="module")
def checkpoint(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    enc, tok = build_encoder(EncoderConfig(name_or_path=str(tiny_encoder_dir)))
    heads = {t: build_head(32, len(c.label_names), c.head) for t, c in TASKS.items()}
    folder = tmp_path_factory.mktemp("predict-ray")
    return save_checkpoint(folder / "ck", MultitaskModel(enc, heads).eval(), tok, TASKS, max_length=16)


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("predict-ray-in") / "in.parquet"
    pq.write_table(pa.table({"id": list(range(len(TEXTS))), "text": TEXTS}), path)
    return path


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    """A local Ray instance for the module (no service needed), shut down after."""
    ray = connect(RayConfig(num_cpus=2))
    yield ray
    ray.shutdown()


def _run(checkpoint: Path, **overrides: object) -> None:
    settings = {"checkpoint": checkpoint, "progress": "false", **overrides}
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        main(compose("predict", [f"{k}={v}" for k, v in settings.items()]))


def _crashing(marker: Path, always: bool) -> type[ShardPredictor]:
    """A ``ShardPredictor`` whose process exits on the shard holding "crash here": once (the first time,
    leaving ``marker``), or every time."""

    class Crashing(ShardPredictor):
        def predict(self, texts: Sequence[str], files: Sequence[Any] = ()) -> Probabilities:
            if "crash here" in texts and (always or not marker.exists()):
                marker.touch()
                os._exit(1)
            return super().predict(texts, files)

    return Crashing


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_cluster_that_cannot_be_reached_is_one_named_error(
    checkpoint: Path,
    rows: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as in a fresh process
    port = _closed_port()
    with pytest.raises(SystemExit) as exit_:
        _run(
            checkpoint,
            input=rows,
            output=tmp_path / "out.parquet",
            backend="ray",
            **{"ray.address": f"127.0.0.1:{port}"},
        )
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: the Ray cluster at '127.0.0.1:{port}' cannot be reached (ConnectionRefusedError"
    )
    assert err.count("\n") == 1 and list(tmp_path.iterdir()) == []


def _assert_same_rows(a: pa.Table, b: pa.Table) -> None:
    assert a.schema == b.schema and a.num_rows == b.num_rows == len(TEXTS)
    for name in a.column_names:
        x, y = a.column(name).to_pylist(), b.column(name).to_pylist()
        if pa.types.is_floating(a.schema.field(name).type):
            assert all((p is None and q is None) or abs(p - q) <= 1e-6 for p, q in zip(x, y, strict=True))
        else:
            assert x == y, name


@pytest.mark.slow
def test_ray_backend_writes_the_local_backends_rows(
    ray_local: Any, checkpoint: Path, rows: Path, tmp_path: Path
) -> None:
    _run(checkpoint, input=rows, output=tmp_path / "local.parquet", keep="[id]", chunk_rows=7)
    _run(
        checkpoint,
        input=rows,
        output=tmp_path / "ray.parquet",
        keep="[id]",
        backend="ray",
        **{"ray.shard_rows": 6, "ray.workers": 2},
    )
    ray_table = pq.read_table(tmp_path / "ray.parquet")
    _assert_same_rows(pq.read_table(tmp_path / "local.parquet"), ray_table)
    assert ray_table.column("id").to_pylist() == list(range(len(TEXTS)))  # input order
    assert pq.ParquetFile(tmp_path / "ray.parquet").metadata.num_row_groups == 7  # a row group per shard


@pytest.mark.slow
def test_a_worker_that_dies_once_is_retried_and_the_output_is_the_same(
    ray_local: Any, checkpoint: Path, rows: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(checkpoint, input=rows, output=tmp_path / "local.parquet", keep="[id]")
    monkeypatch.setattr(mtl.predict, "ShardPredictor", _crashing(tmp_path / "crashed", always=False))
    _run(
        checkpoint,
        input=rows,
        output=tmp_path / "ray.parquet",
        keep="[id]",
        backend="ray",
        **{"ray.shard_rows": 6, "ray.workers": 2, "ray.max_retries": 2},
    )
    assert (tmp_path / "crashed").exists()  # it did die
    _assert_same_rows(pq.read_table(tmp_path / "local.parquet"), pq.read_table(tmp_path / "ray.parquet"))


@pytest.mark.slow
def test_a_worker_that_keeps_dying_fails_the_job_naming_the_shard_and_writes_nothing(
    ray_local: Any,
    checkpoint: Path,
    rows: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(mtl.predict, "ShardPredictor", _crashing(tmp_path / "crashed", always=True))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(SystemExit) as exit_:
        _run(
            checkpoint,
            input=rows,
            output=out / "preds.jsonl",
            backend="ray",
            **{"ray.shard_rows": 6, "ray.workers": 1, "ray.max_retries": 0},
        )
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    # The shards the worker held, shard 2 among them (shard 1's result may be lost with it too).
    held = re.match(
        r"error: shards? ([\d, ]+) \(rows ([\d, -]+) of (.*)\) failed: the Ray worker holding (it|them) died",
        err,
    )
    assert held, err
    assert "2" in held[1].split(", ") and "13-18" in held[2].split(", ") and held[3] == str(rows)
    assert "ray.max_retries=0 retries are used up" in err and "nothing was written as finished" in err
    assert list(out.iterdir()) == []  # not even the temporary file
