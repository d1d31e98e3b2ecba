"""One-pass multi-task inference (``MultitaskModel.predict``) for ``mtl-predict``, in this process or on
Ray actors.

``predict_records`` gives one record per text, in order: an empty or whitespace-only text does not go
through the model and gets ``predictions: None``, so record i always answers text i.

Streaming (``mtl.cli.predict`` reads and writes; this module predicts): the input arrives as ``Chunk``
objects (consecutive rows, in order); ``local_predict`` and ``ray_predict`` turn them into
``(chunk, probabilities)`` pairs in the same order, where the probabilities of a chunk are, per head, a
``rows x classes`` float32 array with a NaN row for every blank text (``chunk_probabilities``).

``ray_predict`` spreads the chunks (its shards) over ``ray.workers`` actors (``ShardPredictor``): each
loads the checkpoint once, from files the driver ships through Ray's object store (so a cluster's nodes
need no copy of it), and holds ``gpus_per_actor`` GPUs. A worker process that dies is restarted and its
shard retried up to ``ray.max_retries`` times; after that the job fails with an error naming the shard
and its rows.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from transformers import PreTrainedTokenizerBase

from mtl.checkpoint import checkpoint_dir, load_checkpoint
from mtl.config import RayConfig, TaskConfig
from mtl.model import MultitaskModel
from mtl.ray_backend import cluster_resources, connect, default_workers, gpus_per_actor
from mtl.types import MtlError

Probabilities = dict[str, np.ndarray]
"""Per head, a ``rows x classes`` float32 array of class probabilities; NaN rows for blank texts."""


def predict(
    model: MultitaskModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    tasks: Sequence[str] | None = None,
    *,
    batch_size: int = 64,
    max_length: int = 128,
) -> dict[str, torch.Tensor]:
    """Class probabilities (len(texts) x classes) per task, in the order of ``texts``, with one encoder
    pass per batch (``MultitaskModel.predict`` with an explicit tokenizer).

    See ``MultitaskModel.predict`` (``mtl.model``) for an example.
    """
    return model.predict(texts, tasks, batch_size=batch_size, tokenizer=tokenizer, max_length=max_length)


def prediction_records(
    texts: Sequence[str], probs: dict[str, torch.Tensor], tasks: Mapping[str, TaskConfig]
) -> list[dict[str, object]]:
    """JSON-ready records: per text, per task the predicted label name and each class's probability.

    Example:
        >>> from mtl.config import SourceConfig
        >>> sms = TaskConfig(label_names=["ham", "spam"], source=SourceConfig(format="csv", path="x.csv"))
        >>> prediction_records(["WIN NOW"], {"sms": torch.tensor([[0.25, 0.75]])}, {"sms": sms})
        [{'text': 'WIN NOW', 'predictions': {'sms': {'label': 'spam', 'probs': {'ham': 0.25, 'spam': 0.75}}}}]
    """
    records: list[dict[str, object]] = []
    for i, text in enumerate(texts):
        preds: dict[str, object] = {}
        for task, p in probs.items():
            names = tasks[task].label_names
            preds[task] = {
                "label": names[int(p[i].argmax())],
                "probs": {n: round(float(v), 6) for n, v in zip(names, p[i].tolist(), strict=True)},
            }
        records.append({"text": text, "predictions": preds})
    return records


def check_heads(heads: Sequence[str] | None, tasks: Iterable[str]) -> list[str]:
    """The heads to predict: ``heads``, or every one of ``tasks`` when empty or None; an unknown head is
    an error listing the model's."""
    names = list(tasks)
    unknown = [h for h in heads or [] if h not in names]
    if unknown:
        raise MtlError(f"no head for task(s) {unknown} in this model; set heads= to some of {sorted(names)}")
    return list(heads) if heads else names


def predict_records(
    model: MultitaskModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    tasks: Mapping[str, TaskConfig],
    heads: Sequence[str] | None = None,
    *,
    batch_size: int = 64,
    max_length: int = 128,
) -> list[dict[str, object]]:
    """One record per text, in the order of ``texts`` (``prediction_records`` of the ``heads``, all when
    None). A text that is empty or only whitespace does not go through the model: its record is
    ``{"text": text, "predictions": None}``, with the text as given."""
    check_heads(heads, tasks)
    keep = [i for i, text in enumerate(texts) if text.strip()]
    records: list[dict[str, object]] = [{"text": text, "predictions": None} for text in texts]
    if keep:
        kept = [texts[i] for i in keep]
        probs = predict(model, tokenizer, kept, heads, batch_size=batch_size, max_length=max_length)
        for i, record in zip(keep, prediction_records(kept, probs, tasks), strict=True):
            records[i] = record
    return records


@dataclass
class Chunk:
    """Consecutive input rows: the unit read, predicted and written (a shard with ``backend=ray``).

    Attributes:
        index: the chunk's number, from 0.
        start: the number of rows before it (its first row is row ``start + 1``).
        texts: one text per row, as read (blank ones included).
        keep: the ``keep`` columns of its rows: a list of Python values or a pyarrow array each.
        source: the input's name, for messages.
    """

    index: int
    start: int
    texts: list[str]
    keep: dict[str, Any] = field(default_factory=dict)
    source: str = "<input>"

    def describe(self) -> str:
        """``shard 3 (rows 201-300 of in.csv)``: what errors call the chunk."""
        return f"shard {self.index} (rows {self.start + 1}-{self.start + len(self.texts)} of {self.source})"


def chunk_probabilities(
    model: MultitaskModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    heads: Sequence[str],
    *,
    batch_size: int = 64,
    max_length: int = 128,
) -> Probabilities:
    """Per head, the class probabilities of every text (``rows x classes`` float32, one encoder pass per
    batch); the row of an empty or whitespace-only text is NaN and the text never reaches the model."""
    kept = [i for i, text in enumerate(texts) if text.strip()]
    out: Probabilities = {}
    probs = (
        predict(
            model, tokenizer, [texts[i] for i in kept], heads, batch_size=batch_size, max_length=max_length
        )
        if kept and heads
        else {}
    )
    for head in heads:
        classes = model.num_classes[head]
        arr = np.full((len(texts), classes), np.nan, dtype=np.float32)
        if kept:
            arr[kept] = probs[head].numpy()
        out[head] = arr
    return out


def chunk_records(
    texts: Sequence[str], probs: Probabilities, label_names: Mapping[str, Sequence[str]]
) -> list[dict[str, object]]:
    """``predict_records``'s records from ``chunk_probabilities``: per text ``{"text", "predictions"}``,
    predictions None for an empty or whitespace-only text, else per head the label name and each
    class's probability (6 decimals).

    Example:
        >>> probs = {"sms": np.array([[0.25, 0.75], [np.nan, np.nan]], dtype=np.float32)}
        >>> chunk_records(["WIN NOW", ""], probs, {"sms": ["ham", "spam"]})  # doctest: +NORMALIZE_WHITESPACE
        [{'text': 'WIN NOW', 'predictions': {'sms': {'label': 'spam', 'probs': {'ham': 0.25, 'spam': 0.75}}}},
         {'text': '', 'predictions': None}]
    """
    lists = {h: p.tolist() for h, p in probs.items()}
    labels = {h: p.argmax(axis=1).tolist() if len(p) else [] for h, p in probs.items()}
    records: list[dict[str, object]] = []
    for i, text in enumerate(texts):
        if not text.strip():
            records.append({"text": text, "predictions": None})
            continue
        preds: dict[str, object] = {}
        for head, rows in lists.items():
            names = label_names[head]
            preds[head] = {
                "label": names[labels[head][i]],
                "probs": {n: round(v, 6) for n, v in zip(names, rows[i], strict=True)},
            }
        records.append({"text": text, "predictions": preds})
    return records


def checkpoint_labels(path: str | Path) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """A checkpoint's label names per head (in head order) and its ``model.json``, from its metadata
    alone: a driver that only writes the output (``backend=ray``) needs no weights."""
    root = checkpoint_dir(path)
    info = json.loads((root / "model.json").read_text())
    labels = {
        name: list(json.loads((root / "heads" / f"{name}.json").read_text())["label_names"])
        for name in info["tasks"]
    }
    return labels, info


def checkpoint_files(path: str | Path) -> dict[str, bytes]:
    """Every file of a checkpoint folder by relative path, to ship to Ray workers."""
    root = checkpoint_dir(path)
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


def local_predict(
    chunks: Iterable[Chunk],
    model: MultitaskModel,
    tokenizer: PreTrainedTokenizerBase,
    heads: Sequence[str],
    *,
    batch_size: int = 64,
    max_length: int = 128,
) -> Iterator[tuple[Chunk, Probabilities]]:
    """Each chunk with its ``chunk_probabilities``, in order, in this process."""
    for chunk in chunks:
        probs = chunk_probabilities(
            model, tokenizer, chunk.texts, heads, batch_size=batch_size, max_length=max_length
        )
        yield chunk, probs


class ShardPredictor:
    """The body of a ``backend=ray`` actor: loads the checkpoint once, from the files the driver ships
    (``checkpoint_files``, through Ray's object store), on a GPU when Ray gave the actor one, then
    predicts shards (``chunk_probabilities``).

    The files come with each shard as ``[ref]`` (a list, so that Ray passes the object ref, not a copy
    of the bytes) and are loaded at the first shard: an actor that Ray restarts after its process died
    loads them again from the retried shard's arguments.
    """

    def __init__(self, heads: Sequence[str], batch_size: int) -> None:
        os.dup2(2, 1)  # Ray streams a worker's stdout to the driver's, which carries the predictions
        sys.stdout = sys.stderr
        transformers.utils.logging.disable_progress_bar()
        self.heads, self.batch_size = list(heads), batch_size
        self.model: MultitaskModel | None = None

    def load(self, files: Mapping[str, bytes]) -> None:
        """Load the checkpoint from its files (written to a temporary folder, removed after)."""
        import ray

        folder = Path(tempfile.mkdtemp(prefix="mtl-predict-"))
        try:
            for rel, blob in files.items():
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                (folder / rel).write_bytes(blob)
            model, self.tokenizer, _, info = load_checkpoint(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if ray.get_gpu_ids() and torch.cuda.is_available():
            model = model.to("cuda")
        self.model, self.max_length = model, int(info["max_length"])

    def predict(self, texts: Sequence[str], files: Sequence[Any] = ()) -> Probabilities:
        """``chunk_probabilities`` of one shard's texts; ``files``: ``[ref]`` of the checkpoint's files,
        loaded at the first call."""
        if self.model is None:
            import ray

            self.load(ray.get(files[0]))
        assert self.model is not None
        return chunk_probabilities(
            self.model,
            self.tokenizer,
            texts,
            self.heads,
            batch_size=self.batch_size,
            max_length=self.max_length,
        )


def describe_shards(chunks: Sequence[Chunk]) -> str:
    """What an error calls some shards: ``Chunk.describe`` for one, else their numbers and row ranges.

    Example:
        >>> a, b = Chunk(3, 20, ["a"] * 10, source="in.csv"), Chunk(1, 5, ["b"] * 5, source="in.csv")
        >>> describe_shards([a, b])
        'shards 1, 3 (rows 6-10, 21-30 of in.csv)'
    """
    if len(chunks) == 1:
        return chunks[0].describe()
    ordered = sorted(chunks, key=lambda c: c.index)
    rows = ", ".join(f"{c.start + 1}-{c.start + len(c.texts)}" for c in ordered)
    return f"shards {', '.join(str(c.index) for c in ordered)} (rows {rows} of {ordered[0].source})"


def _first_line(e: BaseException, limit: int = 300) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def cpus_per_actor(node_cpus: Sequence[float], workers: int) -> int:
    """The most CPUs each of ``workers`` actors can hold with every actor fitting on one of the nodes
    (``node_cpus``: each node's CPUs), at least 1: CPU actors use them as torch threads.

    Example:
        >>> cpus_per_actor([2], 1), cpus_per_actor([2], 2), cpus_per_actor([16, 16, 8], 3)
        (2, 1, 8)
    """
    best = 1
    for c in range(1, int(max(node_cpus, default=1)) + 1):
        if sum(int(n // c) for n in node_cpus) >= workers:
            best = c
    return best


def ray_actors(cfg: RayConfig) -> tuple[int, int, float]:
    """``(actors, CPUs each, GPUs each)`` of a job on the connected cluster: ``cfg.workers`` actors
    (null: one per GPU with GPU actors, else one per CPU) with ``gpus_per_actor(cfg)`` GPUs each;
    GPU actors hold 1 CPU, CPU actors as many as lets them all fit (``cpus_per_actor``: one actor on a
    machine of 8 CPUs runs 8 torch threads). Actors the cluster cannot hold are an error, not a job
    that waits for them forever."""
    import ray

    gpus = gpus_per_actor(cfg)
    have = cluster_resources()
    cpus_there, gpus_there = int(have.get("CPU", 0)), have.get("GPU", 0.0)
    by_gpu = cfg.workers is None and gpus > 0
    workers = max(1, int(gpus_there // gpus)) if by_gpu else default_workers(cfg)
    if workers > cpus_there or workers * gpus > gpus_there:
        raise MtlError(
            f"ray.workers={workers} actors of 1 CPU and {gpus:g} GPU(s) each do not fit the Ray cluster "
            f"({cpus_there} CPUs, {gpus_there:g} GPUs); set ray.workers= or ray.gpus_per_actor= lower"
        )
    if gpus > 0:
        return workers, 1, gpus
    nodes = [float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    return workers, cpus_per_actor(nodes or [cpus_there], workers), gpus


def ray_predict(
    chunks: Iterable[Chunk],
    checkpoint: str | Path,
    heads: Sequence[str],
    cfg: RayConfig,
    *,
    batch_size: int = 64,
) -> Iterator[tuple[Chunk, Probabilities]]:
    """Each chunk with its ``chunk_probabilities``, in input order, computed by ``ShardPredictor``
    actors on the Ray cluster ``cfg`` names (``mtl.ray_backend.connect``, called here: a cluster that
    cannot be reached fails at once): ``ray_actors(cfg)`` actors, at most two shards in flight per
    actor, so the driver holds a bounded number of shards whatever the input's size. A shard whose
    actor died is retried ``cfg.max_retries`` times (the actor restarted); then an ``MtlError`` names the
    shard and its rows. The actors start when the first result is asked for, and are killed when the
    results end (or the consumer stops)."""
    ray = connect(cfg)
    workers, cpus, gpus = ray_actors(cfg)
    return _ray_results(ray, iter(chunks), checkpoint, list(heads), cfg, (workers, cpus, gpus), batch_size)


def _ray_results(
    ray: Any,
    source: Iterator[Chunk],
    checkpoint: str | Path,
    heads: list[str],
    cfg: RayConfig,
    actors_cpus_gpus: tuple[int, int, float],
    batch_size: int,
) -> Iterator[tuple[Chunk, Probabilities]]:
    from ray.exceptions import RayActorError, RayError, RayTaskError

    workers, cpus, gpus = actors_cpus_gpus
    actor_cls = ray.remote(ShardPredictor).options(  # Ray sets OMP_NUM_THREADS (torch's threads) to cpus
        num_cpus=cpus, num_gpus=gpus, max_restarts=cfg.max_retries, max_task_retries=cfg.max_retries
    )
    files = ray.put(checkpoint_files(checkpoint))
    actors = [actor_cls.remote(heads, batch_size) for _ in range(workers)]
    pending: dict[Any, tuple[Chunk, int]] = {}  # result ref -> shard, actor
    done: dict[int, tuple[Chunk, Probabilities]] = {}
    exhausted, next_index = False, -1
    try:
        while True:
            # at most 2 shards per actor held here, in flight or waiting for an earlier one to be written
            while not exhausted and len(pending) + len(done) < 2 * workers:
                chunk = next(source, None)
                if chunk is None:
                    exhausted = True
                    break
                if next_index < 0:
                    next_index = chunk.index
                busy = [0] * workers
                for _, a in pending.values():
                    busy[a] += 1
                a = busy.index(min(busy))
                pending[actors[a].predict.remote(chunk.texts, [files])] = (chunk, a)
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                chunk, a = pending.pop(ref)
                try:
                    done[chunk.index] = (chunk, ray.get(ref))
                except RayActorError as e:
                    # Every shard the actor held is lost with it (one that finished just before may
                    # be too, its result not yet sent): name them all.
                    held = [chunk, *(c for c, b in pending.values() if b == a)]
                    raise MtlError(
                        f"{describe_shards(held)} failed: the Ray worker holding "
                        f"{'it' if len(held) == 1 else 'them'} died and "
                        f"ray.max_retries={cfg.max_retries} retries are used up ({_first_line(e)}); "
                        "nothing was written as finished. Look at the worker's log "
                        "(/tmp/ray/session_latest/logs on its node) or raise ray.max_retries"
                    ) from e
                except (RayTaskError, RayError) as e:
                    raise MtlError(
                        f"{chunk.describe()} failed on a Ray worker: "
                        f"{_first_line(getattr(e, 'cause', None) or e)}; nothing was written as finished"
                    ) from e
            while next_index in done:
                yield done.pop(next_index)
                next_index += 1
    finally:
        for actor in actors:  # their queued shards fail with them
            ray.kill(actor)


__all__ = [
    "Chunk",
    "Probabilities",
    "ShardPredictor",
    "check_heads",
    "checkpoint_files",
    "checkpoint_labels",
    "chunk_probabilities",
    "chunk_records",
    "cpus_per_actor",
    "describe_shards",
    "local_predict",
    "predict",
    "predict_records",
    "prediction_records",
    "ray_actors",
    "ray_predict",
]
