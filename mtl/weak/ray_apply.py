"""Applying LFs (and SFs) on a Ray cluster: ``weak.backend: ray``.

The same label matrix as ``apply_lfs``, bit for bit (both run ``mtl.weak.apply.label_rows`` on the same
rows with the same row numbers), computed by Ray Data:

* Python LFs run as ``map_batches`` **tasks** (any free CPU of the cluster takes a batch);
* model LFs (``model_lf``, ``checkpoint_lf``: ``ModelLabelingFunction``s) run in
  **actors** that load the model once each (a GPU each where the cluster has GPUs);
* the rows are cut into shards of ``ray.shard_rows``; this process writes each finished shard's votes to
  ``<out_dir>/votes-<first>-<last>.parquet`` (to a temporary name first, then renamed: a file under
  the final name is complete). A rerun with the same LFs and data reuses the finished shards, so a job
  that failed after hours loses only its unfinished shards.

Failures: a task or actor whose worker dies is retried ``ray.max_retries`` times; past that the job
stops with an error naming the unfinished shards (row ranges). An LF that raises stops the job with the
in-process applier's own error (LF name, row, text), or, with ``fault_tolerant``, abstains there and is
counted. An LF that cannot be pickled for the workers is named before anything runs.

Example (a local Ray instance; ``RayConfig(address="host:6379")`` joins a cluster):
    >>> from mtl.config import RayConfig
    >>> out = apply_lfs_ray(ds, lfs, cardinality=2, cfg=RayConfig(num_cpus=2))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.fingerprint import Hasher
from tqdm.auto import tqdm

from mtl.config import RayConfig
from mtl.ray_backend import connect, default_workers, gpus_per_actor, require_ray
from mtl.types import MtlError
from mtl.weak.apply import LFApplicationError, LFOutput, _check_names, apply_lfs, label_rows
from mtl.weak.lf import LabelingFunction
from mtl.weak.model_lf import ModelLabelingFunction

_ROW = "__row"
_VOTES = "__votes"
_FAILED = "__failed"
_MARK = "<<mtl-lf-error>>"  # brackets an LF's own error in the message Ray passes back (as text only)
_MANIFEST = "_manifest.json"


class _LFError(Exception):
    """An LF's error on a Ray worker, its message bracketed by ``_MARK`` (read back by ``_lf_error``)."""


def _causes(e: BaseException) -> Iterator[BaseException]:
    """``e`` and every exception inside it: Ray's ``cause`` and Python's ``__cause__``, each once."""
    seen: set[int] = set()
    todo = [e]
    while todo:
        cur = todo.pop(0)
        if id(cur) not in seen:
            seen.add(id(cur))
            yield cur
            todo += [x for x in (getattr(cur, "cause", None), cur.__cause__) if isinstance(x, BaseException)]


def _lf_error(e: BaseException) -> LFApplicationError | None:
    """The LF's own error (as the in-process applier raises it) inside Ray's wrapper of a worker's
    exception, found by its marks in the text of the exception or of its causes; None if there is none."""
    for cur in _causes(e):
        text = str(cur)
        start = text.find(_MARK)
        end = text.find(_MARK, start + len(_MARK)) if start >= 0 else -1
        if end > start:
            return LFApplicationError(text[start + len(_MARK) : end])
    return None


class RayJobError(MtlError):
    """A Ray job that could not finish: names the shards (row ranges) left unfinished."""


@dataclass(frozen=True)
class Shard:
    """Rows ``start`` (inclusive) to ``end`` (exclusive) of a split: the unit written, reused and named."""

    start: int
    end: int

    @property
    def file(self) -> str:
        return f"votes-{self.start:012d}-{self.end - 1:012d}.parquet"

    def __str__(self) -> str:
        return f"rows {self.start}..{self.end - 1} ({self.file})"


def shards(n: int, shard_rows: int) -> list[Shard]:
    """Contiguous shards of ``shard_rows`` rows covering ``0..n-1``.

    Example:
        >>> [(s.start, s.end) for s in shards(5, 2)]
        [(0, 2), (2, 4), (4, 5)]
        >>> str(shards(5, 2)[2])
        'rows 4..4 (votes-000000000004-000000000004.parquet)'
    """
    return [Shard(a, min(n, a + shard_rows)) for a in range(0, n, shard_rows)]


def is_model_lf(lf: LabelingFunction) -> bool:
    """Whether ``lf`` holds a model (it loads one in an actor rather than running as a task)."""
    return isinstance(lf, ModelLabelingFunction)


def check_serialisable(lfs: Sequence[LabelingFunction]) -> None:
    """Pickle each LF as Ray will (cloudpickle; code loaded from a task's ``.py`` file goes by value, the
    workers cannot import it) and name the first that cannot be sent."""
    from ray import cloudpickle

    for name, module in list(sys.modules.items()):
        if name.startswith("mtl_user_code.") and module is not None:
            cloudpickle.register_pickle_by_value(module)
    for lf in lfs:
        try:
            cloudpickle.dumps(lf)
        except Exception as e:
            raise MtlError(
                f"{lf.kind} {lf.name!r} cannot be sent to the Ray workers: {type(e).__name__}: {e}. "
                "Everything an LF refers to must be picklable: open a file, connection or model inside "
                "the LF (or in a model LF's load) instead of holding it"
            ) from None


def _votes_table(rows: np.ndarray, L: np.ndarray, failed: np.ndarray) -> pa.Table:
    m = L.shape[1]
    return pa.table(
        {
            _ROW: pa.array(rows, pa.int64()),
            _VOTES: pa.FixedSizeListArray.from_arrays(pa.array(L.ravel(), pa.int16()), m),
            _FAILED: pa.FixedSizeListArray.from_arrays(pa.array(failed.ravel(), pa.bool_()), m),
        }
    )


def _column_matrix(table: pa.Table, column: str, dtype: Any) -> np.ndarray:
    col = table.column(column).combine_chunks()
    width = col.type.list_size
    return np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=dtype).reshape(-1, width)


def _label_table(
    batch: pa.Table,
    lfs: Sequence[LabelingFunction],
    cardinality: int,
    fault_tolerant: bool,
    keep_inputs: bool,
    order: Sequence[int] | None,
) -> pa.Table:
    """Votes of ``lfs`` on a batch. A batch that already carries votes (the Python LFs', from the task
    stage) gets these appended and the columns put back in LF order (``order``). ``keep_inputs``: the
    row's fields stay for a later stage; else only the row number and the votes are returned."""
    earlier = _VOTES in batch.column_names
    inputs = batch.drop_columns([c for c in (_ROW, _VOTES, _FAILED) if c in batch.column_names])
    rows = batch.column(_ROW).to_numpy()
    try:
        L, failed = label_rows(inputs.to_pylist(), rows.tolist(), lfs, cardinality, fault_tolerant)
    except LFApplicationError as e:  # Ray hands the driver only the text: mark where the message is
        raise _LFError(f"{_MARK}{e}{_MARK}") from None
    if earlier:
        L = np.concatenate([_column_matrix(batch, _VOTES, np.int16), L], axis=1)
        failed = np.concatenate([_column_matrix(batch, _FAILED, bool), failed], axis=1)
    if order is not None:
        L, failed = L[:, order], failed[:, order]
    votes = _votes_table(rows, L, failed)
    if not keep_inputs:
        return votes
    return (
        inputs.append_column(_ROW, votes.column(_ROW))
        .append_column(_VOTES, votes.column(_VOTES))
        .append_column(_FAILED, votes.column(_FAILED))
    )


class _ModelLFs:
    """Ray actor: loads each model LF once, then votes batch after batch."""

    def __init__(
        self, lfs: Sequence[LabelingFunction], cardinality: int, fault_tolerant: bool, order: Sequence[int]
    ) -> None:
        for lf in lfs:
            assert isinstance(lf, ModelLabelingFunction)
            lf.load()
        self.lfs, self.k, self.ft, self.order = list(lfs), cardinality, fault_tolerant, list(order)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return _label_table(batch, self.lfs, self.k, self.ft, keep_inputs=False, order=self.order)


def _fingerprint(ds: datasets.Dataset, lfs: Sequence[LabelingFunction], cardinality: int, ft: bool) -> str:
    data = {"data": ds._fingerprint, "lfs": Hasher.hash(list(lfs)), "k": cardinality, "ft": ft, "v": 1}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _open_out_dir(out_dir: Path, manifest: dict[str, Any]) -> set[str]:
    """Prepare ``out_dir`` for this job and return the shard files already finished there (same manifest);
    a folder of another job (other LFs or data) is emptied first."""
    path = out_dir / _MANIFEST
    if path.exists() and json.loads(path.read_text()) != manifest:
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = out_dir / f"{_MANIFEST}{_tmp_suffix()}"
        tmp.write_text(json.dumps(manifest, indent=1))
        tmp.replace(path)
    for stale in out_dir.glob("*.tmp-*"):  # a write cut short (never taken as done): remove it unless
        host, _, pid = stale.name.rsplit(".tmp-", 1)[1].rpartition("-")  # a live process is writing it
        if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)
    return {p.name for p in out_dir.glob("votes-*.parquet")}


def _tmp_suffix() -> str:
    """``.tmp-<host>-<pid>``: whose write it is, so that a rerun removes only writes cut short."""
    return f".tmp-{socket.gethostname()}-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cause(e: BaseException) -> BaseException:
    """The user's exception inside Ray's wrappers (``RayTaskError``, ``UserCodeException``): the first
    ``MtlError`` among the causes, else the innermost cause."""
    last = e
    for last in _causes(e):
        if isinstance(last, MtlError):
            return last
    return last


def _write_shard(out_dir: Path, shard: Shard, parts: list[pa.Table]) -> None:
    table = pa.concat_tables(parts).sort_by(_ROW)
    if table.num_rows != shard.end - shard.start:
        raise RayJobError(f"{shard}: {table.num_rows} rows came back for {shard.end - shard.start}")
    tmp = out_dir / f"{shard.file}{_tmp_suffix()}"
    pq.write_table(table, tmp)
    tmp.replace(out_dir / shard.file)


def _read_shards(out_dir: Path, all_shards: Sequence[Shard], m: int) -> tuple[np.ndarray, np.ndarray]:
    if not all_shards:
        return np.zeros((0, m), np.int16), np.zeros((0, m), bool)
    tables = [pq.read_table(out_dir / s.file) for s in all_shards]
    table = pa.concat_tables(tables)
    return _column_matrix(table, _VOTES, np.int16), _column_matrix(table, _FAILED, bool)


def apply_lfs_ray(
    ds: datasets.Dataset,
    lfs: Sequence[LabelingFunction],
    cardinality: int,
    *,
    cfg: RayConfig,
    batch_size: int = 1000,
    fault_tolerant: bool = False,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> LFOutput:
    """Apply ``lfs`` to every row of ``ds`` on Ray and return the label matrix (see the module docstring).

    Args:
        ds: rows as dicts (at least the fields the LFs read).
        lfs: labeling (or slicing) functions; their names must be unique.
        cardinality: number of classes; a vote outside ``-1..cardinality-1`` is an error.
        cfg: the cluster (``address``), ``workers``, ``shard_rows``, ``gpus_per_actor``, ``max_retries``.
        batch_size: rows per Ray batch (batch LFs see this many texts at a time).
        fault_tolerant: as in ``apply_lfs``.
        out_dir: where the shards' Parquet files go and are reused from; None: a temporary folder,
            removed at the end.
        progress: a progress bar (rows/s) on stderr.
    """
    names = _check_names(lfs)
    lf_list = list(lfs)
    require_ray()  # before anything imports it: without Ray, the error says how to install it
    check_serialisable(lf_list)
    ray = connect(cfg)
    m = len(lf_list)
    todo_dir = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="mtl-ray-votes-"))
    manifest = {
        "fingerprint": _fingerprint(ds, lf_list, cardinality, fault_tolerant),
        "rows": len(ds),
        "lfs": names,
        "shard_rows": cfg.shard_rows,
    }
    try:
        done = _open_out_dir(todo_dir, manifest)
        every = shards(len(ds), cfg.shard_rows)
        pending = [s for s in every if s.file not in done]
        if pending:
            with warnings.catch_warnings():  # max_retries & co. as remote args: deprecated, no successor yet
                warnings.filterwarnings("ignore", message=".*ray_remote_args.*", category=DeprecationWarning)
                warnings.filterwarnings("ignore", message=".*only received .* input", category=UserWarning)
                data = _job(
                    ray.data.from_arrow(_blocks(ds, pending)),
                    lf_list,
                    cardinality,
                    cfg,
                    batch_size,
                    fault_tolerant,
                )
                _run(data, pending, todo_dir, progress, temporary=out_dir is None)
        L, failed = _read_shards(todo_dir, every, m)
    finally:
        if out_dir is None:
            shutil.rmtree(todo_dir, ignore_errors=True)
    failures = {n: int(c) for n, c in zip(names, failed.sum(0), strict=True) if c}
    return LFOutput(L, names, failures)


def _blocks(ds: datasets.Dataset, pending: Sequence[Shard]) -> list[pa.Table]:
    """The rows of each pending shard as an Arrow table with its row numbers (``_ROW``)."""
    table = ds.with_format("arrow")
    return [
        table[s.start : s.end].append_column(_ROW, pa.array(range(s.start, s.end), pa.int64()))
        for s in pending
    ]


def _job(
    data: Any,
    lfs: list[LabelingFunction],
    cardinality: int,
    cfg: RayConfig,
    batch_size: int,
    fault_tolerant: bool,
) -> Any:
    """The Ray Data pipeline: the Python LFs as tasks, then the model LFs in actors (votes in LF order)."""
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    python = [j for j, lf in enumerate(lfs) if not is_model_lf(lf)]
    model = [j for j, lf in enumerate(lfs) if is_model_lf(lf)]
    order = np.argsort(np.asarray(python + model)).tolist()  # stage columns back in LF order
    workers = default_workers(cfg)
    if python:
        data = data.map_batches(
            _label_table,
            batch_format="pyarrow",
            batch_size=batch_size,
            fn_kwargs={
                "lfs": [lfs[j] for j in python],
                "cardinality": cardinality,
                "fault_tolerant": fault_tolerant,
                "keep_inputs": bool(model),
                "order": None,
            },
            compute=TaskPoolStrategy(size=workers),
            max_retries=cfg.max_retries,
        )
    if model:
        data = data.map_batches(
            _ModelLFs,
            batch_format="pyarrow",
            batch_size=batch_size,
            fn_constructor_kwargs={
                "lfs": [lfs[j] for j in model],
                "cardinality": cardinality,
                "fault_tolerant": fault_tolerant,
                "order": order,
            },
            # from 1 actor up: a fixed pool as large as the cluster would hold every CPU and starve the
            # Python LFs' tasks that feed it
            compute=ActorPoolStrategy(min_size=1, max_size=workers),
            num_gpus=gpus_per_actor(cfg),
            max_restarts=cfg.max_retries,
            max_task_retries=cfg.max_retries,
        )
    return data


def _run(data: Any, pending: list[Shard], out_dir: Path, progress: bool, temporary: bool) -> None:
    """Stream the job's batches back, gather each shard's rows and write every shard once complete."""
    starts = np.asarray([s.start for s in pending])
    parts: dict[Shard, list[pa.Table]] = {s: [] for s in pending}
    got: dict[Shard, int] = dict.fromkeys(pending, 0)
    rows_todo = sum(s.end - s.start for s in pending)
    bar = tqdm(total=rows_todo, unit="rows", disable=not progress, desc="LFs on Ray", file=sys.stderr)
    t0 = time.time()
    batches = data.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=2)
    try:
        for batch in batches:
            where = np.searchsorted(starts, batch.column(_ROW).to_numpy(), side="right") - 1
            for idx in np.unique(where):
                shard = pending[int(idx)]
                part = batch.filter(pa.array(where == idx))
                parts[shard].append(part)
                got[shard] += part.num_rows
                bar.update(part.num_rows)
                if got[shard] == shard.end - shard.start:
                    _write_shard(out_dir, shard, parts.pop(shard))
        if parts:  # a shard that never got all its rows (or got some twice)
            raise RayJobError(f"{len(parts)} shards came back incomplete: {_listed(list(parts))}")
    except Exception as e:
        lf_error = _lf_error(e)
        if lf_error is not None:
            raise lf_error from None  # the LF's own error, as the in-process applier gives it
        cause = _cause(e)
        if isinstance(cause, MtlError) and not isinstance(cause, RayJobError):
            raise type(cause)(str(cause)) from e
        unfinished = [s for s in pending if s in parts]
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        kept = (
            "Nothing is kept (no out_dir was given)"
            if temporary
            else f"The finished shards are kept in {out_dir} and reused by a rerun with the same LFs and data"
        )
        raise RayJobError(
            f"the Ray job stopped after {time.time() - t0:.0f} s ({type(cause).__name__}: {first}); "
            f"{len(unfinished)} of {len(pending)} shards unfinished: {_listed(unfinished)}. {kept}"
        ) from e
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()  # a stopped job frees the cluster now, not when the iterator is collected
        bar.close()


def _listed(shards: Sequence[Shard], limit: int = 5) -> str:
    return ", ".join(str(s) for s in shards[:limit]) + (" ..." if len(shards) > limit else "")


def apply_lfs_backend(
    ds: datasets.Dataset,
    lfs: Sequence[LabelingFunction],
    cardinality: int,
    *,
    backend: str = "datasets",
    ray: RayConfig | None = None,
    num_proc: int | None = None,
    fault_tolerant: bool = False,
    out_dir: str | Path | None = None,
) -> LFOutput:
    """``apply_lfs`` (``backend="datasets"``, ``num_proc`` processes) or ``apply_lfs_ray``
    (``backend="ray"``, on the cluster ``ray`` names, shards kept in ``out_dir``): the same matrix."""
    if backend == "ray":
        return apply_lfs_ray(
            ds, lfs, cardinality, cfg=ray or RayConfig(), fault_tolerant=fault_tolerant, out_dir=out_dir
        )
    return apply_lfs(ds, lfs, cardinality, num_proc=num_proc, fault_tolerant=fault_tolerant)
