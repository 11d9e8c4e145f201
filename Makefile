# Two commands for a newcomer: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint pytest bench stack-up stack-down demo-stack clean

# Reinstall when the project's metadata changes; pip alone decides what is missing.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/quickstart.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest

test: lint pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

stack-up:
	docker compose up -d --wait

stack-down:
	docker compose down

demo-stack: $(STAMP)
	OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 $(BIN)/resilient-http demo
	$(BIN)/resilient-http analyze otel-collector/data/

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
