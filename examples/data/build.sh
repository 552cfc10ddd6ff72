#!/usr/bin/env sh
# Regenerate the demo samples from a data root (deterministic: same input, same files).
# Usage: examples/data/build.sh DATA_ROOT
# DATA_ROOT holds the public sets in their upstream layout (training/data/README.md, "Data root").
set -eu
if [ "$#" -ne 1 ]; then
  echo "usage: $0 DATA_ROOT   (the data root layout: training/data/README.md)" >&2
  exit 2
fi
DATA="$(cd "$1" && pwd)"
cd "$(dirname "$0")/../.."
PY="${PYTHON:-.venv/bin/python}"
exec "$PY" -m training.data.examples --data "$DATA" --out examples/data
