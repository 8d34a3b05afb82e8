# Every target works on a fresh machine: the first one that needs the environment creates it.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel lies on disk on the project's machines; GPU users pick their build, e.g.
#   make install TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
# two test processes, one torch thread each (tests/conftest.py), on the 2-core machines;
# loadgroup keeps the tests that share one running web app (xdist_group) on one process
PYTEST_ARGS ?= -n 2 --dist loadgroup

.PHONY: install test test-all lint format profile train demo bench bench-data notebooks ablation ablation-families clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv with torch (TORCH_SPEC=... to choose it) and derain[dev]

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)  ## run the test suite (what CI runs); slow tests excluded
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: $(STAMP)  ## run every test, slow ones included
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff check + format check
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

format: $(STAMP)  ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix src tests
	$(VENV)/bin/ruff format src tests

bench: $(STAMP)  ## network efficiency on CPU: inference 256²/1024², training step (ARGS="--quick", "--check")
	$(PY) -m derain.benchmarks.bench $(ARGS)

bench-data: $(STAMP)  ## data loader and synthetic-rain speed next to the training step rate
	$(PY) -m derain.benchmarks.bench_data

train: $(STAMP)  ## the main job: train the CPU demo on built-in synthetic rain, test, write results
	$(VENV)/bin/derain-train experiment=demo $(ARGS)

demo: $(STAMP)  ## the web app: derain photos in the browser (ARGS="ckpt_path=CKPT port=7860")
	$(VENV)/bin/derain-demo $(ARGS)

notebooks: $(STAMP)  ## run the notebooks at smoke scale into logs/notebooks/
	mkdir -p logs/notebooks
	for nb in notebooks/*.ipynb; do $(VENV)/bin/papermill $$nb logs/notebooks/$$(basename $$nb) -k python3; done

ABLATIONS ?= full,no_attention,no_conv_branch,no_mam,no_rain_prior,rain_head,background_head
SEEDS ?= 1,2,3
ablation: $(STAMP)  ## the ablation study (every variant x 3 seeds: hours on CPU; rerun to resume), then its report
	$(VENV)/bin/derain-train -m experiment=ablation model/ablation=$(ABLATIONS) seed=$(SEEDS)
	mkdir -p logs/notebooks
	DERAIN_SCALE=full DERAIN_STUDY=logs/ablation/default $(VENV)/bin/papermill notebooks/01_ablation.ipynb logs/notebooks/01_ablation_full.ipynb -k python3

FAMILY_ABLATIONS ?= full,no_attention,no_conv_branch,no_mam,no_rain_prior
PHOTOS ?= ../shared/photos
ablation-families: $(STAMP)  ## the ablation study on every rain family (PHOTOS: CBSD68/, McMaster/, Kodak24/; ~3 CPU hours), then its report
	$(VENV)/bin/derain-train -m experiment=ablation_families photos_dir=$(PHOTOS) model/ablation=$(FAMILY_ABLATIONS) seed=$(SEEDS)
	mkdir -p logs/notebooks
	DERAIN_SCALE=full DERAIN_STUDY=logs/ablation/families $(VENV)/bin/papermill notebooks/01_ablation.ipynb logs/notebooks/01_ablation_families.ipynb -k python3

profile: $(STAMP)  ## parameters, GMACs, CPU latency and efficiency of the presets
	$(VENV)/bin/derain-profile

clean:  ## remove the environment and run outputs
	rm -rf $(VENV) logs outputs multirun .pytest_cache
