#!/usr/bin/env sh
# Regenerate the demo samples from the shared data set (deterministic: same input, same files).
# Usage: examples/data/build.sh [DATA_ROOT]   (default: ../shared/data, relative to the repo root)
set -eu
cd "$(dirname "$0")/../.."
DATA="${1:-../shared/data}"
PY="${PYTHON:-.venv/bin/python}"
exec "$PY" -m training.data.examples --data "$DATA" --out examples/data
