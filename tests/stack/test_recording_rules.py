"""The recording rules shipped next to prometheus.yml: generated from the code that reads them,
valid for promtool, loaded by the config and mounted beside it in the compose file."""

from __future__ import annotations

from pathlib import Path

import yaml

from resilient_http.analysis.recording_rules import render_rules
from tests.prometheus_server import run_promtool

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "otel-collector" / "recording-rules.yml"


def test_the_shipped_rules_are_the_generated_ones() -> None:
    # Regenerate with: python -c "from resilient_http.analysis.recording_rules import
    # render_rules; print(render_rules(), end='')" > otel-collector/recording-rules.yml
    assert RULES.read_text() == render_rules()


def test_promtool_accepts_the_rules() -> None:
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def test_prometheus_loads_and_compose_mounts_them() -> None:
    config = yaml.safe_load((ROOT / "otel-collector" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["recording-rules.yml"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    volumes = compose["services"]["prometheus"]["volumes"]
    assert "./otel-collector/recording-rules.yml:/etc/prometheus/recording-rules.yml:ro" in volumes
