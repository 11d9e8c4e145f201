"""Static checks of the bundled collector stack (no Docker engine needed): the shared basics
and the collector's configuration.

Each check is a plain function over parsed YAML/JSON (dicts) that returns a list of problems,
empty when all is well, so tests can run it on the real files and on mutated copies. The checks
are split by concern:

- this module: loading, the repository's paths, and the collector's pipelines;
- `tests/compose_checks.py`: the compose file's images, ports and mounts, and the links
  collector -> Jaeger / Prometheus;
- `tests/prometheus_names.py`: the Prometheus names the collector produces and the ones the
  Grafana dashboard queries.

Schema validation of docker-compose.yml is left to check-jsonschema (see
tests/stack/test_compose.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import yaml

__all__ = [
    "COLLECTOR_SERVICE",
    "REPO_ROOT",
    "UNUSED_COMPONENT_ALLOW_LIST",
    "Config",
    "collector_config_problems",
    "component_type",
    "load_yaml",
]

Config = dict[str, Any]

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
COLLECTOR_SERVICE: Final = "otel-collector"
# Components that may be defined without being in a pipeline: `debug` is kept for
# troubleshooting and enabled by adding it to a pipeline (otel-collector/config.yaml says how).
UNUSED_COMPONENT_ALLOW_LIST: Final = frozenset({("exporters", "debug")})
_KINDS: Final = ("receivers", "processors", "exporters", "connectors")


def load_yaml(path: Path) -> Config:
    """Parse one YAML mapping file."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


# ---------------------------------------------------------------- collector configuration


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def _defined(config: Config, kind: str) -> set[str]:
    return set(config.get(kind) or {})


def _pipelines(config: Config) -> dict[str, Config]:
    return dict((config.get("service") or {}).get("pipelines") or {})


def collector_config_problems(
    config: Config, allow_unused: frozenset[tuple[str, str]] = UNUSED_COMPONENT_ALLOW_LIST
) -> list[str]:
    """Pipelines reference only defined components, every component is used (allow-list
    aside), memory_limiter comes first and batch is present in every pipeline, and each
    connector joins one pipeline (as exporter) to another (as receiver)."""
    problems: list[str] = []
    pipelines = _pipelines(config)
    if not pipelines:
        return ["service.pipelines is empty"]
    connectors = _defined(config, "connectors")
    used: dict[str, set[str]] = {kind: set() for kind in _KINDS}
    connector_ends: dict[str, dict[str, set[str]]] = {
        c: {"in": set(), "out": set()} for c in connectors
    }
    for name, pipeline in pipelines.items():
        if component_type(name) not in {"traces", "metrics", "logs", "profiles"}:
            problems.append(f"pipeline {name}: unknown signal type")
        for role in ("receivers", "processors", "exporters"):
            for component in pipeline.get(role) or []:
                if role != "processors" and component in connectors:
                    used["connectors"].add(component)
                    connector_ends[component]["out" if role == "exporters" else "in"].add(name)
                elif component in _defined(config, role):
                    used[role].add(component)
                else:
                    problems.append(f"pipeline {name}: {role[:-1]} {component!r} is not defined")
        for role in ("receivers", "exporters"):
            if not pipeline.get(role):
                problems.append(f"pipeline {name}: no {role}")
        processors = [component_type(p) for p in pipeline.get("processors") or []]
        if not processors or processors[0] != "memory_limiter":
            problems.append(f"pipeline {name}: memory_limiter is not the first processor")
        if "batch" not in processors:
            problems.append(f"pipeline {name}: no batch processor")
    for kind in _KINDS:
        for component in sorted(_defined(config, kind) - used[kind]):
            if (kind, component) not in allow_unused:
                problems.append(f"{kind[:-1]} {component!r} is defined but in no pipeline")
    for connector, ends in sorted(connector_ends.items()):
        if not ends["out"] or not ends["in"]:
            problems.append(f"connector {connector!r} must be an exporter and a receiver")
        elif ends["out"] & ends["in"]:
            problems.append(f"connector {connector!r} feeds the pipeline it is fed by")
    extensions = set((config.get("service") or {}).get("extensions") or [])
    for extension in sorted(extensions - _defined(config, "extensions")):
        problems.append(f"extension {extension!r} is enabled but not defined")
    for extension in sorted(_defined(config, "extensions") - extensions):
        problems.append(f"extension {extension!r} is defined but not enabled")
    return problems
