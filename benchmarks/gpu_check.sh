#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): the training-cost table of every method at ViT-B/16 in bf16
# and fp32, eager and compiled, against IRRA's own step; 50 bf16 training steps of every method through
# `accelerate launch`, reloaded with AutoModel; results in out/gpu-check/gpu_check.{json,md} (--out).
# At most 8 minutes on one H100. Offline: random weights, the synthetic data.
#   benchmarks/gpu_check.sh [--out DIR] [--methods ...]     # on a GPU
#   benchmarks/gpu_check.sh --smoke --out DIR               # the same code on the CPU, tiny sizes
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export HF_HOME="${HF_HOME:-$(mktemp -d)}"
exec "${PYTHON:-.venv/bin/python}" benchmarks/gpu_check.py "$@"
