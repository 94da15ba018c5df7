# SNDS lake: see README.md. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
export UV_LINK_MODE ?= copy

# make synth / demo
N ?= 2000
SEED ?= 42
YEARS ?= 2019-2021
OUT ?= var/deliveries/synthetic-n$(N)-s$(SEED)
# make demo / run
ENGINE ?= duckdb
REGION ?=
RELEASE ?=
INPUT ?=
STEPS ?=
DRY_RUN ?=
# make run / synth: delivery profile (config/profiles/<name>.yaml, a file, or auto); make synth: variants
PROFILE ?=
VARIANTS ?=

# make sql / audit / versions
Q ?=
ARGS ?=

# make cohort
STUDY ?=
RUN_ID ?=

.PHONY: help install lock demo test airflow run detect keys sql audit versions cohort synth bench clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create .venv from requirements.lock (checks Java 17+)

$(VENV)/.installed: requirements.lock pyproject.toml
	@scripts/check_java.sh
	@test -n "$(PYTHON)" || { echo "ERROR: Python 3.11 is required (python3.11 not found)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "ERROR: Python 3.11 is required, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	VIRTUAL_ENV=$(VENV) $(BIN)/uv pip sync --quiet requirements.lock
	VIRTUAL_ENV=$(VENV) $(BIN)/uv pip install --quiet --no-deps -e .
	@$(BIN)/python -c 'import pyspark; v = pyspark.__version__; assert v.startswith("4.3"), "pyspark " + v + " installed, 4.3 expected"; print("pyspark", v, "OK")'
	@touch $@

lock: ## re-resolve requirements.in into requirements.lock (pyspark-client excluded)
	$(BIN)/uv pip compile requirements.in --override overrides.txt -o requirements.lock --python-version 3.11 --no-header

demo: install ## synthetic delivery (N=2000, 3 years) through the release DAG; ENGINE=duckdb|spark
	$(BIN)/python -m snds_synth --n $(N) --seed $(SEED) --years $(YEARS) --out var/deliveries/demo
	$(BIN)/python -m snds_operators.localrun run --input var/deliveries/demo --release demo-n$(N)-s$(SEED) --engine $(ENGINE) $(if $(REGION),--region $(REGION))
	$(BIN)/python -m spark_jobs.leakscan --delivery var/deliveries/demo var/lake/*/*/release=demo-n$(N)-s$(SEED) var/lake/*/catalog var/audit var/airflow var/vault

test: install ## the whole test suite
	$(BIN)/python -m pytest

airflow: install ## airflow standalone with the project's DAGs (UI on :8080)
	$(BIN)/python -m snds_operators.localrun airflow

run: install ## run the release DAG: make run RELEASE=<id> [INPUT=<dir>] [REGION=<r>] [PROFILE=<name>|auto] [ENGINE=...] [STEPS=a,b] [DRY_RUN=1]
	@test -n "$(RELEASE)" || { echo "usage: make run RELEASE=<id> [INPUT=<delivery dir>] [REGION=<region>] [PROFILE=<profile name or file>|auto] [ENGINE=duckdb|spark-local|spark-standalone] [STEPS=merge,model] [DRY_RUN=1]"; exit 2; }
	$(BIN)/python -m snds_operators.localrun run --release "$(RELEASE)" $(if $(INPUT),--input "$(INPUT)") $(if $(REGION),--region $(REGION)) $(if $(PROFILE),--profile "$(PROFILE)") $(if $(filter command line,$(origin ENGINE)),--engine $(ENGINE)) $(if $(STEPS),--steps $(STEPS)) $(if $(DRY_RUN),--dry-run)

detect: install ## print the delivery profile detected in a delivery: make detect INPUT=<dir> (> config/profiles/mine.yaml)
	@test -n "$(INPUT)" || { echo "usage: make detect INPUT=<delivery dir>   (prints a profile file; redirect it to keep it)"; exit 2; }
	@$(BIN)/python -m spark_jobs.detect --input "$(INPUT)"

keys: install ## region key and vault: make keys ACTION=check|commit|rotate [REGION=<r>]
	@test -n "$(ACTION)" || { echo "usage: make keys ACTION=check|commit|rotate [REGION=<region>]"; exit 2; }
	$(BIN)/python -m snds_operators.localrun keys $(ACTION) $(if $(REGION),--region $(REGION))

sql: install ## query the published tables: make sql [REGION=r] [Q="SELECT ..."] (no Q: a prompt)
	$(BIN)/python -m snds_operators.localrun sql $(if $(REGION),--region $(REGION)) $(if $(Q),-c "$(Q)")

audit: install ## the run audit database: make audit [REGION=r] [ARGS="show <run id>"] (default: list)
	$(BIN)/python -m snds_operators.localrun audit $(if $(REGION),--region $(REGION)) $(ARGS)

versions: install ## published versions: make versions [REGION=r] [ARGS="switch --release R --run-id ID"] (default: list)
	$(BIN)/python -m snds_operators.localrun versions $(if $(REGION),--region $(REGION)) $(ARGS)

cohort: install ## study cohorts over a published release: make cohort RELEASE=<id> [REGION=r] [STUDY=config/studies/x.yaml] [RUN_ID=<published run id>]
	@test -n "$(RELEASE)" || { echo "usage: make cohort RELEASE=<id> [REGION=<region>] [STUDY=<study file>] [RUN_ID=<published run id>]"; exit 2; }
	$(BIN)/python -m snds_operators.localrun cohort --release "$(RELEASE)" $(if $(REGION),--region $(REGION)) $(if $(STUDY),--study "$(STUDY)") $(if $(RUN_ID),--model-run-id "$(RUN_ID)")

synth: install ## synthetic delivery: make synth N=<n> SEED=<s> YEARS=<y1-y2> OUT=<dir> [PROFILE=<name>] [VARIANTS=a,b]
	$(BIN)/python -m snds_synth --n $(N) --seed $(SEED) --years $(YEARS) --out $(OUT) $(if $(PROFILE),--profile $(PROFILE)) $(if $(VARIANTS),--variants $(VARIANTS))

bench: install ## benchmark generator, ingest and every pipeline step (10k and 50k beneficiaries, both engines)
	$(BIN)/python benchmarks/run.py --out var/bench/results.json

clean: ## remove the local lake, Airflow home, deliveries and bench output; keeps .venv, var/keys and var/vault
	rm -rf var/lake var/airflow var/deliveries var/bench var/audit var/lineage
	@echo "kept var/keys and var/vault (the region's key and pseudonym vault); remove them by hand to start over"
