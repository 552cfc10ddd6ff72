#!/usr/bin/env bash
# GPU readiness in one command (bench/gpu.py): fp16 export, CUDA serving with I/O binding,
# results/gpu.json. On a host without onnxruntime's CUDA provider it says so and exits 0.
#   PYTHON=.venv-gpu/bin/python bash bench/gpu.sh [--checkpoint CKPT --eval-data FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "[bench/gpu] skipped: no nvidia-smi on this host (no NVIDIA GPU or driver)"
    exit 0
fi
exec env PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" bench/gpu.py "$@"
