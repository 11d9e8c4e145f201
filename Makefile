# Two commands for a newcomer: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint pytest matrix promtool stack-up stack-down demo-stack clean bench dist compose-v2

# Reinstall when the project's metadata changes; pip alone decides what is missing.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The distribution was called resilient_http before 0.2.0: a venv from then would keep a
	# second copy of the metadata and of the resilient-http script.
	$(BIN)/python -m pip uninstall --quiet --yes resilient_http 2>/dev/null || true
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/resilient-http demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# tests/test_aiohttp_suite.py runs aiohttp's own client tests, which need the aiohttp-tests extra.
SUITE_STAMP := $(VENV)/.installed-aiohttp-tests
$(SUITE_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,aiohttp-tests]'
	touch $(SUITE_STAMP)

pytest: $(SUITE_STAMP) promtool
	$(BIN)/python -m pytest

# promtool (in Debian's prometheus package) lets tests/stack check otel-collector/prometheus.yml
# and the recording rules; the package's prometheus binary runs the tests of analyze --prometheus.
# Installed where apt-get can run (as root); elsewhere, or offline, those tests skip and say why.
# The package's service is not started in containers (policy-rc.d); nothing here needs it.
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing promtool (Debian package prometheus)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	        --no-install-recommends prometheus >/dev/null; } \
	      || echo "promtool: apt-get could not install prometheus; its test will skip"; \
	  else \
	    echo "promtool: not installed (needs root and apt-get); its test will skip"; \
	  fi; }

# The suite on every other aiohttp minor of pyproject's range (noxfile.py): `pytest` covers the
# minor installed in .venv; nox keeps one venv per minor in .nox/ and reinstalls only when
# pyproject.toml changes. The distribution tests are left out there: their clean venv installs
# the newest aiohttp whatever the session's minor, so they would repeat the same 30 s; the
# scenario runs are left out too (they test the advice, which no aiohttp minor changes), and so
# are the tests on a real Prometheus, which check PromQL and the exporters, not aiohttp.
matrix: $(SUITE_STAMP) promtool
	sessions="$$($(BIN)/python noxfile.py)" && \
	  if [ -n "$$sessions" ]; then \
	    $(BIN)/nox -s $$sessions -- -q -p no:cacheprovider \
	      -m 'not distribution and not scenarios and not prometheus'; \
	  else echo "matrix: .venv's aiohttp is the only minor"; fi

test: lint pytest matrix

# Benchmarks (about 8 minutes measured on the shared 2-core machine with other tests running,
# less when it is quiet): the bench extra (httpx, sniffio) is installed on first use.
# Scale up or choose with BENCH_ARGS, e.g. make bench BENCH_ARGS='--full' or '--json'.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# Without Compose v2 (the `docker compose` plugin) docker's own error ("'compose' is not a
# docker command", or no docker at all) does not say what is missing: say it in one line.
compose-v2:
	@docker compose version >/dev/null 2>&1 || { echo "make $(MAKECMDGOALS): the collector stack needs Docker \
	with Compose v2 ('docker compose'), which is not installed here" >&2; exit 1; }

stack-up: compose-v2
	HOST_UID=$$(id -u) HOST_GID=$$(id -g) docker compose up -d --wait

stack-down: compose-v2
	docker compose --profile grafana down

# An sdist and a wheel in dist/ (the wheel built from the sdist, as PyPI users get it).
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

demo-stack: $(STAMP)
	@$(BIN)/python -c "import urllib.request as u; u.urlopen('http://localhost:13133/', timeout=2)" 2>/dev/null \
		|| { echo "The collector does not answer on localhost:13133: run 'make stack-up' first." >&2; exit 1; }
	@touch .demo-stack-started
	OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 $(BIN)/resilient-http demo
	@$(BIN)/python otel-collector/wait_for_export.py .demo-stack-started otel-collector/data/metrics.jsonl 30
	@rm -f .demo-stack-started
	$(BIN)/resilient-http analyze otel-collector/data/

clean:
	rm -rf $(VENV) .nox .mypy_cache .ruff_cache .pytest_cache
