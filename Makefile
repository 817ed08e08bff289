# airflow-provider-mlops - the two commands: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
UV_VERSION := 0.13.8
UV := .local/uv/bin/uv
VENV := .venv
STACK := $(VENV)/bin/python scripts/local_stack.py
PYTEST_ARGS ?=

.PHONY: demo test test-all bench up stop lint install clean help

help:
	@echo "make demo   - install from the lock, start the local stack, run the 8-day drift scenario (monitoring, retraining, promotion), print the timeline + HTML summary; DAY=YYYY-MM-DD runs the CT DAG once"
	@echo "make test   - run the test suite (services that are absent are skipped with a reason)"
	@echo "make up     - start Airflow on http://127.0.0.1:8080 with the pack and DAGs loaded"
	@echo "make bench  - benchmarks (ratios measured in one run)"
	@echo "make lint   - ruff"
	@echo "make stop   - stop the local MLflow server"

$(UV):
	$(PYTHON) -m venv .local/uv
	.local/uv/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)

# The Airflow environment, exactly as locked (torch is never in it: training has its own env).
$(VENV)/.installed: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --all-extras --python $(PYTHON)
	touch $@

# The training environment (torch CPU + mlflow-skinny), the same entrypoint the GPU image runs.
.venv-train/.requirements.sha256: include/training/requirements.txt | $(VENV)/.installed
	$(STACK) training-env

install: $(VENV)/.installed .venv-train/.requirements.sha256

demo: install
	$(STACK) demo $(if $(DAY),--day $(DAY),)

up: install
	$(STACK) up

stop:
	-$(STACK) stop

test: install
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: install
	$(VENV)/bin/python -m bench $(BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff check plugins dags tests scripts include
	$(VENV)/bin/ruff format --check plugins dags tests scripts include || true

clean: stop
	rm -rf .local .venv .venv-train
