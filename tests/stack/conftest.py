"""Static verification of the bundled collector stack (docker-compose.yml, otel-collector/):
the paths and parsed files the tests share.

No Docker engine runs here, so the stack is checked as files. The check functions live in
tests/stack_checks.py (collector configuration), tests/compose_checks.py (compose file and
links) and tests/prometheus_names.py (metric names, PromQL, the dashboard); they take parsed
dicts, so each test file's negative tests run them on mutated copies to prove that each check
can fail.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests import stack_checks as sc

COMPOSE_PATH = sc.REPO_ROOT / "docker-compose.yml"
COLLECTOR_CONFIG_PATH = sc.REPO_ROOT / "otel-collector" / "config.yaml"
GRAFANA_DIR = sc.REPO_ROOT / "otel-collector" / "grafana"

Config = dict[str, Any]


@pytest.fixture(scope="module")
def compose() -> Config:
    return sc.load_yaml(COMPOSE_PATH)


@pytest.fixture(scope="module")
def collector() -> Config:
    return sc.load_yaml(COLLECTOR_CONFIG_PATH)
