"""weak.backend=ray: the same label matrix as the in-process applier, shards, retries and named errors.

One local Ray instance (2 CPUs) for the module, so CI needs no service. Marked slow: Ray's workers start
in seconds, not milliseconds.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import datasets
import numpy as np
import pytest

from mtl.config import RayConfig, SourceConfig, TaskConfig, WeakConfig
from mtl.prepare import load_task_splits
from mtl.ray_backend import check_reachable, connect
from mtl.task import Task
from mtl.types import MtlError
from mtl.weak import ABSTAIN, LabelingFunction, keyword_lf, labeling_function, model_lf, preprocessor
from mtl.weak.apply import LFApplicationError, apply_lfs
from mtl.weak.model_lf import ModelLabelingFunction
from mtl.weak.pipeline import weak_label
from mtl.weak.ray_apply import RayJobError, apply_lfs_ray

pytestmark = pytest.mark.slow
CFG = RayConfig(num_cpus=2, workers=2, shard_rows=70)


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    ray = connect(RayConfig(num_cpus=2))
    yield
    ray.shutdown()


@pytest.fixture
def rows() -> datasets.Dataset:
    texts = [
        ["win cash now", "see you at lunch", "WIN A PRIZE", "", "call me maybe", "free free free"][i % 6]
        + f" {i}"
        for i in range(333)
    ]
    return datasets.Dataset.from_dict({"text": texts, "n": list(range(333))})


@preprocessor()
def lowered(x: dict[str, object]) -> dict[str, object]:
    return {"low": str(x["text"]).lower()}


@labeling_function(pre=[lowered])
def prize(x: dict[str, object]) -> int:
    return 1 if "prize" in str(x["low"]) else ABSTAIN


@labeling_function()
def odd_row(x: dict[str, object]) -> int:
    return int(x["n"]) % 2  # type: ignore[call-overload]


def _shouting(texts: list[str]) -> list[list[float]]:
    return [[0.1, 0.9] if t.split()[0].isupper() else [0.6, 0.4] for t in texts]


def _loaded_in(folder: str) -> ModelLabelingFunction:
    """A model LF whose loader leaves a file per load, named by the process that loaded it."""

    def load() -> object:
        with Path(folder, f"load-{os.getpid()}-count").open("a") as f:
            f.write("x")
        return _shouting

    return ModelLabelingFunction("shouting_model", load, min_confidence=0.55)  # type: ignore[arg-type]


def _lfs(tmp_path: Path) -> list[LabelingFunction]:
    return [
        keyword_lf("cash", ["cash", "free"], 1),
        _loaded_in(str(tmp_path)),  # a model LF between Python LFs: columns come back in LF order
        prize,
        model_lf("shouting_fn", _shouting, min_confidence=0.8),
        odd_row,
        keyword_lf("lunch", ["lunch"], 0),
    ]


def test_ray_gives_the_in_process_matrix_bit_for_bit_and_loads_each_model_once_per_actor(
    rows: datasets.Dataset, tmp_path: Path
) -> None:
    lfs = _lfs(tmp_path)
    local = apply_lfs(rows, lfs, 2)
    out = tmp_path / "votes"
    ray = apply_lfs_ray(rows, lfs, 2, cfg=CFG, batch_size=32, out_dir=out, progress=False)
    assert ray.names == local.names
    assert ray.L.dtype == local.L.dtype == np.int16
    np.testing.assert_array_equal(ray.L, local.L)
    assert (local.L != ABSTAIN).sum() > 500  # every LF voted somewhere: the comparison means something
    files = sorted(p.name for p in out.glob("votes-*.parquet"))
    assert files == [f"votes-{a:012d}-{min(a + 69, 332):012d}.parquet" for a in range(0, 333, 70)]
    # the model was loaded once per actor (2 actors at most), not once per batch (11 batches)
    counts = [len(p.read_text()) for p in tmp_path.glob("load-*-count")]
    assert 1 <= len(counts) <= 2 and all(c == 1 for c in counts)
    # a rerun reuses the finished shards: nothing is recomputed (no shard file is rewritten)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("votes-*.parquet")}
    again = apply_lfs_ray(rows, lfs, 2, cfg=CFG, out_dir=out, progress=False)
    np.testing.assert_array_equal(again.L, local.L)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("votes-*.parquet")} == mtimes


def test_an_lf_error_is_the_in_process_error_and_fault_tolerance_counts_alike(
    rows: datasets.Dataset,
) -> None:
    @labeling_function()
    def breaks_on_200(x: dict[str, object]) -> int:
        if x["n"] == 200:
            raise ValueError("no good")
        return ABSTAIN

    lfs = [keyword_lf("cash", ["cash"], 1), breaks_on_200]
    with pytest.raises(LFApplicationError) as local:
        apply_lfs(rows, lfs, 2)
    with pytest.raises(LFApplicationError) as ray:
        apply_lfs_ray(rows, lfs, 2, cfg=CFG, progress=False)
    assert str(ray.value) == str(local.value)
    # one shard of many batches, the failing row in its 7th: still the LF's own error
    one_shard = RayConfig(num_cpus=2, workers=2, shard_rows=1000)
    with pytest.raises(LFApplicationError) as ray:
        apply_lfs_ray(rows, lfs, 2, cfg=one_shard, batch_size=32, progress=False)
    assert str(ray.value) == str(local.value)
    assert "'breaks_on_200' failed on row 200 ('WIN A PRIZE 200'): ValueError: no good" in str(ray.value)
    a = apply_lfs(rows, lfs, 2, fault_tolerant=True)
    b = apply_lfs_ray(rows, lfs, 2, cfg=CFG, fault_tolerant=True, progress=False)
    assert a.failures == b.failures == {"breaks_on_200": 1}
    np.testing.assert_array_equal(a.L, b.L)


def test_a_worker_that_dies_is_retried_or_the_unfinished_shards_are_named(
    rows: datasets.Dataset, tmp_path: Path
) -> None:
    marker = tmp_path / "died"

    @labeling_function(resources={"marker": str(marker)})
    def dies_once_on_150(x: dict[str, object], marker: str) -> int:
        if x["n"] == 150 and not os.path.exists(marker):
            Path(marker).touch()
            os._exit(1)  # the worker process dies, as on an out-of-memory kill
        return 1 if "cash" in str(x["text"]) else ABSTAIN

    marker.touch()  # in this process it must not die
    expected = apply_lfs(rows, [dies_once_on_150], 2)
    marker.unlink()
    retried = apply_lfs_ray(rows, [dies_once_on_150], 2, cfg=CFG, progress=False)
    assert marker.exists()  # it did die once
    np.testing.assert_array_equal(retried.L, expected.L)

    marker.unlink()
    out = tmp_path / "votes"
    no_retry = RayConfig(num_cpus=2, workers=2, shard_rows=70, max_retries=0)
    with pytest.raises(RayJobError) as err:
        apply_lfs_ray(rows, [dies_once_on_150], 2, cfg=no_retry, out_dir=out, progress=False)
    assert "rows 140..209 (votes-000000000140-000000000209.parquet)" in str(err.value)
    assert "reused by a rerun" in str(err.value)
    left = sorted(p.name for p in out.iterdir())
    assert "votes-000000000140-000000000209.parquet" not in left  # nothing half-written taken as done
    assert not [n for n in left if ".tmp" in n]
    resumed = apply_lfs_ray(rows, [dies_once_on_150], 2, cfg=no_retry, out_dir=out, progress=False)
    np.testing.assert_array_equal(resumed.L, expected.L)


def test_an_lf_that_cannot_be_pickled_and_an_unreachable_cluster_are_named(rows: datasets.Dataset) -> None:
    @labeling_function(resources={"lock": threading.Lock()})
    def holds_a_lock(x: dict[str, object], lock: object) -> int:
        return ABSTAIN

    with pytest.raises(MtlError, match=r"labeling function 'holds_a_lock' cannot be sent to the Ray workers"):
        apply_lfs_ray(rows, [holds_a_lock], 2, cfg=CFG, progress=False)
    with pytest.raises(MtlError, match=r"the Ray cluster at '127.0.0.1:9' cannot be reached"):
        check_reachable("127.0.0.1:9", timeout=2)


def test_the_pipeline_on_ray_gives_the_same_weak_labels(spam_folder: Path, tmp_path: Path) -> None:
    (tmp_path / "my_lfs.py").write_text(
        "from mtl.weak import keyword_lf\nLFS = [keyword_lf('cash', ['cash', 'win'], 1), "
        "keyword_lf('hello', ['hello', 'lunch'], 0)]\n"
    )

    def task(backend: str) -> Task:
        weak = WeakConfig(lfs=f"{tmp_path}/my_lfs.py:LFS", backend=backend, ray=CFG)  # type: ignore[arg-type]
        source = SourceConfig(format="wrench", path=str(spam_folder))  # type: ignore[arg-type]
        return Task("spam", TaskConfig(label_names=["ham", "spam"], source=source, labels="weak", weak=weak))  # type: ignore[arg-type]

    dsd = load_task_splits(task("datasets"), tmp_path / "cache")
    a = weak_label(task("datasets"), dsd, tmp_path / "cache")
    b = weak_label(task("ray"), dsd, tmp_path / "ray_cache")  # another cache: computed on Ray
    assert (tmp_path / "ray_cache" / "votes" / "spam-train" / "_manifest.json").exists()
    for split in ("train", "dev", "test"):
        np.testing.assert_array_equal(a.L[split], b.L[split])
    np.testing.assert_array_equal(a.train_probs, b.train_probs)
    # where the LFs ran is not part of the labels' cache key: the same votes either way
    assert weak_label(task("ray"), dsd, tmp_path / "cache").folder == a.folder
    assert not (tmp_path / "cache" / "votes").exists()


def test_a_rerun_removes_only_the_writes_of_processes_that_died(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    from mtl.weak.ray_apply import _open_out_dir

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    host = socket.gethostname()
    manifest = {"fingerprint": "f", "rows": 3, "lfs": ["a"], "shard_rows": 2}
    _open_out_dir(tmp_path, manifest)
    cut_short = tmp_path / f"votes-000000000000-000000000001.parquet.tmp-{host}-{dead.stdout.strip()}"
    writing = tmp_path / f"votes-000000000002-000000000002.parquet.tmp-{host}-{os.getpid()}"
    elsewhere = tmp_path / f"votes-000000000002-000000000002.parquet.tmp-otherhost-{dead.stdout.strip()}"
    for f in (cut_short, writing, elsewhere):
        f.write_bytes(b"half")
    (tmp_path / "votes-000000000000-000000000001.parquet").write_bytes(b"done")
    assert _open_out_dir(tmp_path, manifest) == {"votes-000000000000-000000000001.parquet"}
    assert not cut_short.exists() and writing.exists() and elsewhere.exists()
