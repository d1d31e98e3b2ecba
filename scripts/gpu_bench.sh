#!/usr/bin/env bash
# The default experiment on one GPU, fp32 then bf16 (accelerate's mixed precision, conf/accelerate/gpu_bf16.yaml):
# training examples/s and peak GPU memory side by side. Meant for the device tool's lent machine, after
# `bash scripts/gpu_bundle.sh` here:  run(command="bash scripts/gpu_bench.sh", carry=[".gpu"], timeout_s=540)
# It installs .gpu/whl into /tmp/site (nothing else is installed there), widens the bf16-carried MiniLM to fp32
# and writes both runs' reports under $OUT (default outputs/gpu_bench). EXTRA="trainer.max_steps=5" adds
# mtl-train overrides (a smoke run); PYTHON picks the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-outputs/gpu_bench}
[ -d .gpu/whl ] && [ -d .gpu/minilm ] || { echo "gpu_bench: .gpu/ is missing: run scripts/gpu_bundle.sh first" >&2; exit 2; }
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export MTL_CACHE_DIR=${MTL_CACHE_DIR:-/tmp/mtl-cache}
"$PY" - <<'PY'
import torch
from transformers import AutoModel, AutoTokenizer

AutoModel.from_pretrained(".gpu/minilm", dtype=torch.float32).save_pretrained("/tmp/minilm")
AutoTokenizer.from_pretrained(".gpu/minilm").save_pretrained("/tmp/minilm")
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device (CPU)"
print(f"device: {name}; torch {torch.__version__}")
PY
mkdir -p "$OUT"
for mp in no bf16; do
  start=$(date +%s)
  # shellcheck disable=SC2086
  "$PY" -m accelerate.commands.launch --config_file conf/accelerate/gpu_bf16.yaml --mixed_precision "$mp" \
    -m mtl.cli.train experiment=tweets encoder.name_or_path=/tmp/minilm "output_dir=$OUT/$mp" ${EXTRA:-} \
    >"$OUT/$mp.log" 2>&1 || { tail -40 "$OUT/$mp.log"; exit 1; }
  echo "mixed_precision=$mp: $(($(date +%s) - start)) s"
done
"$PY" - "$OUT" <<'PY'
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
rows = {mp: json.loads((out / mp / "report.json").read_text()) for mp in ("no", "bf16")}
print("| mixed precision | train examples/s | vs fp32 | peak GPU memory (MiB) | train s | run s | test mean |")
print("|---|---|---|---|---|---|---|")
base = rows["no"]["train_examples_per_s"]
for mp, r in rows.items():
    secs = r["train_examples"] / r["train_examples_per_s"]
    print(
        f"| {r['mixed_precision']} | {r['train_examples_per_s']:.1f} | {r['train_examples_per_s'] / base:.2f}x "
        f"| {r.get('peak_gpu_memory_mb', 'n/a (CPU)')} | {secs:.1f} | {r['wall_seconds']} | {r['mean']['test']:.4f} |"
    )
print(f"device {rows['bf16']['device']}, {rows['bf16']['train_examples']} training examples a run")
PY
