#!/bin/sh
# Install xmixup's serving environment into the active Python (normally a fresh venv).
#
#   docker/install-serve.sh cpu|gpu [PROJECT_DIR]
#
# The ONE install recipe: Dockerfile.cpu / Dockerfile.gpu run it in their build stage and
# tests/deploy/test_install.py runs it in a fresh `python -m venv`, so a broken image install
# fails the test suite without a docker daemon.
#   1. the pinned closure (requirements-serve-<variant>.txt) with --no-deps: a missing or
#      conflicting pin fails here instead of floating to whatever the index has today;
#   2. the project itself, --no-deps (its [serve] requirements are the closure above);
#   3. pip check + check_serve_env.py: extras satisfied, no torch, `import service.app` works.
# pip's cache is left to the caller (the image build uses a BuildKit cache mount).
set -eu
variant=${1:?usage: install-serve.sh cpu|gpu [PROJECT_DIR]}
project=${2:-.}
here=$(cd "$(dirname "$0")" && pwd)
case "$variant" in
  cpu|gpu) ;;
  *) echo "install-serve.sh: variant must be cpu or gpu, not '$variant'" >&2; exit 2 ;;
esac
python=${PYTHON:-python}
"$python" -m pip install --quiet --no-deps --requirement "$here/requirements-serve-$variant.txt"
"$python" -m pip install --quiet --no-deps "$project"
"$python" -m pip check
"$python" "$here/check_serve_env.py" "$variant"
