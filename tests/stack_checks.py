"""Static checks of the bundled collector stack (no Docker engine needed).

Each check is a plain function over parsed YAML/JSON (dicts) that returns a list of problems,
empty when all is well, so tests can run it on the real files and on mutated copies.
What it covers: the collector's pipelines, the compose file's images, ports and mounts, the
links collector -> Jaeger / Prometheus, and the Prometheus names the Grafana dashboard queries.
Schema validation of docker-compose.yml is left to check-jsonschema (see tests/test_stack.py).

Prometheus names follow the translation of the pinned collector's `prometheus` exporter,
`translation_strategy: UnderscoreEscapingWithSuffixes` (contrib v0.139.0 builds names with
github.com/prometheus/otlptranslator; `prometheus_metric_name` mirrors its `normalizeName`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import yaml

__all__ = [
    "COLLECTOR_SERVICE",
    "REPO_ROOT",
    "SDK_ATTRIBUTES",
    "SDK_INSTRUMENTS",
    "UNUSED_COMPONENT_ALLOW_LIST",
    "Instrument",
    "Kind",
    "Mount",
    "collector_config_problems",
    "dashboard_problems",
    "endpoint_port",
    "expected_prometheus_labels",
    "expected_prometheus_names",
    "file_export_problems",
    "image_pin_problems",
    "jaeger_link_problems",
    "load_yaml",
    "mounts",
    "prometheus_label_name",
    "prometheus_link_problems",
    "prometheus_metric_name",
    "promql_label_names",
    "promql_metric_names",
    "published_ports",
    "receiver_port_problems",
]

Config = dict[str, Any]
Kind = Literal["counter", "updowncounter", "gauge", "histogram"]

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
COLLECTOR_SERVICE: Final = "otel-collector"
# Components that may be defined without being in a pipeline: `debug` is kept for
# troubleshooting and enabled by adding it to a pipeline (otel-collector/config.yaml says how).
UNUSED_COMPONENT_ALLOW_LIST: Final = frozenset({("exporters", "debug")})
_KINDS: Final = ("receivers", "processors", "exporters", "connectors")


@dataclass(frozen=True)
class Instrument:
    """One metric instrument as the OTel SDK exports it (name, kind, unit)."""

    name: str
    kind: Kind
    unit: str


# The SDK's instruments (SPEC "Telemetry contract"). Durations are in seconds; counts carry
# UCUM annotations such as {connection}, which add no suffix in Prometheus.
SDK_INSTRUMENTS: Final = (
    Instrument("http.client.request.duration", "histogram", "s"),
    Instrument("http.client.open_connections", "updowncounter", "{connection}"),
    Instrument("http.client.connection.duration", "histogram", "s"),
    Instrument("http.client.active_requests", "updowncounter", "{request}"),
    Instrument("resilient_http.request.duration", "histogram", "s"),
    Instrument("resilient_http.pool.wait.duration", "histogram", "s"),
    Instrument("resilient_http.connection.acquired", "counter", "{connection}"),
    Instrument("resilient_http.retries", "counter", "{retry}"),
    Instrument("resilient_http.retries.suppressed", "counter", "{retry}"),
    Instrument("resilient_http.pool.limit", "gauge", "{connection}"),
)
SDK_ATTRIBUTES: Final = frozenset(
    {"server.address", "server.port", "http.request.method", "http.response.status_code",
     "error.type", "http.connection.state", "resilient_http.connection.reused",
     "resilient_http.retry.reason", "resilient_http.suppression.reason",
     "resilient_http.pool.limit.scope"}
)  # fmt: skip
# Labels every series may carry besides the attributes: job/instance come from the resource
# (service.name, service.instance.id), le from histogram buckets.
_PROMETHEUS_LABELS: Final = frozenset({"job", "instance", "le"})
_SPANMETRICS_DEFAULT_DIMENSIONS: Final = ("service.name", "span.name", "span.kind", "status.code")
_SPANMETRICS_DEFAULT_NAMESPACE: Final = "traces.span.metrics"
_SPANMETRICS_DEFAULT_UNIT: Final = "ms"  # v0.139.0; the config sets `s` explicitly


def load_yaml(path: Path) -> Config:
    """Parse one YAML mapping file."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


# ---------------------------------------------------------------- collector configuration


def _component_type(component_id: str) -> str:
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
        if _component_type(name) not in {"traces", "metrics", "logs", "profiles"}:
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
        processors = [_component_type(p) for p in pipeline.get("processors") or []]
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


def endpoint_port(endpoint: str) -> int:
    """Port of `host:port`, `:port` or a URL with an explicit port."""
    if "://" in endpoint:
        port = urlsplit(endpoint).port
        if port is None:
            raise ValueError(f"no port in {endpoint!r}")
        return port
    return int(endpoint.rsplit(":", 1)[1])


def _endpoint_host(endpoint: str) -> str:
    if "://" in endpoint:
        return urlsplit(endpoint).hostname or ""
    return endpoint.rsplit(":", 1)[0]


# ---------------------------------------------------------------- compose file


@dataclass(frozen=True)
class Mount:
    """A bind mount or volume of one compose service."""

    source: str
    target: str
    read_only: bool


def image_pin_problems(compose: Config) -> list[str]:
    """Every service names an image with an exact version tag (not `latest`) or a digest."""
    problems: list[str] = []
    for name, service in (compose.get("services") or {}).items():
        image = str(service.get("image") or "")
        if not image:
            problems.append(f"service {name}: no image")
            continue
        if "@sha256:" in image:
            continue
        last = image.rsplit("/", 1)[-1]
        tag = last.split(":", 1)[1] if ":" in last else ""
        if not tag or tag == "latest" or not any(ch.isdigit() for ch in tag):
            problems.append(f"service {name}: image {image!r} is not pinned to a version")
    return problems


def published_ports(service: Config) -> dict[int, int]:
    """Container port -> published host port, from short or long port syntax."""
    ports: dict[int, int] = {}
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            if entry.get("published") is not None:
                ports[int(entry["target"])] = int(entry["published"])
            continue
        parts = str(entry).split("/", 1)[0].split(":")
        if len(parts) >= 2:
            ports[int(parts[-1])] = int(parts[-2])
    return ports


def mounts(service: Config) -> list[Mount]:
    """The service's volumes, short (`src:dst[:ro]`) or long syntax."""
    found: list[Mount] = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            found.append(
                Mount(
                    str(entry.get("source", "")), str(entry["target"]), bool(entry.get("read_only"))
                )
            )
            continue
        parts = str(entry).split(":")
        options = parts[2].split(",") if len(parts) > 2 else []
        found.append(Mount(parts[0], parts[1], "ro" in options))
    return found


def _service(compose: Config, name: str) -> Config:
    return dict((compose.get("services") or {}).get(name) or {})


def receiver_port_problems(
    config: Config, compose: Config, grpc_port: int, http_port: int
) -> list[str]:
    """The OTLP receiver listens on all interfaces on the SDK's default ports, and the
    collector service publishes them on the same host ports."""
    problems: list[str] = []
    protocols = ((config.get("receivers") or {}).get("otlp") or {}).get("protocols") or {}
    published = published_ports(_service(compose, COLLECTOR_SERVICE))
    for protocol, wanted in (("grpc", grpc_port), ("http", http_port)):
        endpoint = str((protocols.get(protocol) or {}).get("endpoint") or "")
        if not endpoint:
            problems.append(f"otlp receiver: no explicit {protocol} endpoint")
            continue
        port = endpoint_port(endpoint)
        if port != wanted:
            problems.append(f"otlp {protocol} listens on {port}, the SDK default is {wanted}")
        if _endpoint_host(endpoint) not in {"0.0.0.0", ""}:
            problems.append(f"otlp {protocol} endpoint {endpoint} is unreachable from the host")
        if published.get(port) != wanted:
            problems.append(f"{COLLECTOR_SERVICE} does not publish {port} on host port {wanted}")
    return problems


def file_export_problems(config: Config, compose: Config, host_folder: str) -> list[str]:
    """Every file exporter writes inside a writable mount of the collector whose host side
    is `host_folder` (relative to the compose file)."""
    problems: list[str] = []
    files = {
        n: c for n, c in (config.get("exporters") or {}).items() if _component_type(n) == "file"
    }
    if not files:
        problems.append("no file exporter defined")
    collector_mounts = mounts(_service(compose, COLLECTOR_SERVICE))
    for name, exporter in files.items():
        path = PurePosixPath(str((exporter or {}).get("path") or ""))
        mount = next((m for m in collector_mounts if path.is_relative_to(m.target)), None)
        if mount is None:
            problems.append(f"{name}: {path} is in no mounted volume of {COLLECTOR_SERVICE}")
        elif mount.read_only or Path(mount.source) != Path(host_folder):
            problems.append(f"{name}: {path} lands in {mount.source} (ro={mount.read_only})")
        if (exporter or {}).get("format", "json") != "json":
            problems.append(f"{name}: format is not json (the analysis reads OTLP JSON lines)")
    return problems


def _services_with_image(compose: Config, image_name: str) -> set[str]:
    return {
        name
        for name, service in (compose.get("services") or {}).items()
        if str(service.get("image", "")).rsplit(":", 1)[0] == image_name
    }


def jaeger_link_problems(config: Config, compose: Config) -> list[str]:
    """otlp/jaeger targets the Jaeger service on Jaeger's OTLP gRPC port, without TLS."""
    exporter = (config.get("exporters") or {}).get("otlp/jaeger")
    if not exporter:
        return ["exporter otlp/jaeger is not defined"]
    problems: list[str] = []
    endpoint = str(exporter.get("endpoint", ""))
    jaegers = _services_with_image(compose, "jaegertracing/jaeger")
    if _endpoint_host(endpoint) not in jaegers:
        problems.append(
            f"otlp/jaeger endpoint {endpoint!r} is not a Jaeger service {sorted(jaegers)}"
        )
    # Jaeger v2's all-in-one receives OTLP gRPC on 4317 (JAEGER_LISTEN_HOST=0.0.0.0 in the image).
    if endpoint and endpoint_port(endpoint) != 4317:
        problems.append(
            f"otlp/jaeger targets port {endpoint_port(endpoint)}, Jaeger receives on 4317"
        )
    if not (exporter.get("tls") or {}).get("insecure"):
        problems.append("otlp/jaeger: Jaeger listens without TLS, set tls.insecure")
    return problems


def prometheus_link_problems(config: Config, prometheus: Config) -> list[str]:
    """Prometheus scrapes the collector's `prometheus` exporter, which names series the way
    the dashboard expects (the stack's chosen path: pull, see otel-collector/config.yaml)."""
    exporter = (config.get("exporters") or {}).get("prometheus")
    if not exporter:
        return ["exporter prometheus is not defined"]
    problems: list[str] = []
    wanted = f"{COLLECTOR_SERVICE}:{endpoint_port(str(exporter.get('endpoint', '')))}"
    targets = {
        str(target)
        for job in prometheus.get("scrape_configs") or []
        for static in job.get("static_configs") or []
        for target in static.get("targets") or []
    }
    if wanted not in targets:
        problems.append(f"Prometheus scrapes {sorted(targets)}, not the exporter at {wanted}")
    strategy = exporter.get("translation_strategy", "UnderscoreEscapingWithSuffixes")
    if strategy != "UnderscoreEscapingWithSuffixes" or exporter.get("add_metric_suffixes") is False:
        problems.append(f"prometheus exporter: {strategy} names are not the dashboard's names")
    return problems


# ---------------------------------------------------------------- Prometheus names

# otlptranslator's unitMap / perUnitMap (the entries that can appear here and a few more).
_UNIT_WORDS: Final = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds",
    "us": "microseconds", "ns": "nanoseconds", "By": "bytes", "KiBy": "kibibytes",
    "MiBy": "mebibytes", "GiBy": "gibibytes", "KBy": "kilobytes", "MBy": "megabytes",
    "GBy": "gigabytes", "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts",
    "g": "grams", "Cel": "celsius", "Hz": "hertz", "1": "", "%": "percent",
}  # fmt: skip
_PER_UNIT_WORDS: Final = {
    "s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"
}  # fmt: skip
_NOT_METRIC_CHAR: Final = re.compile(r"[^a-zA-Z0-9:]+")


def _clean_unit(unit: str) -> str:
    return re.sub(r"_+", "_", re.sub(r"[^a-zA-Z0-9:]", "_", unit)).removeprefix("_")


def prometheus_metric_name(name: str, unit: str, kind: Kind, namespace: str = "") -> str:
    """The Prometheus name of an OTel metric under UnderscoreEscapingWithSuffixes: tokens of
    [a-zA-Z0-9:] joined by `_`, the unit word appended unless already a token (annotations
    like {retry} add nothing), `_total` for monotonic counters, `_ratio` for unit-1 gauges."""
    tokens = [t for t in _NOT_METRIC_CHAR.split(name) if t]
    main_unit, _, per_unit = unit.partition("/")
    main = (
        ""
        if re.search(r"[{}]", main_unit)
        else _UNIT_WORDS.get(main_unit.strip(), main_unit.strip())
    )
    per = "" if not per_unit.strip() or re.search(r"[{}]", per_unit) else per_unit.strip()
    per = f"per_{_PER_UNIT_WORDS.get(per, per)}" if per else ""
    main, per = _clean_unit(main), _clean_unit(per)
    if main in tokens:
        main = ""
    per = "" if per == "per_" else per.removesuffix("_")
    if per in tokens:
        per = ""
    if per:
        main = main.removesuffix("_")
    tokens += [suffix for suffix in (main, per) if suffix]
    if kind == "counter":
        tokens = [t for t in tokens if t != "total"] + ["total"]
    if unit == "1" and kind == "gauge":
        tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
    if namespace:
        tokens.insert(0, namespace)
    result = "_".join(tokens)
    return f"_{result}" if result[:1].isdigit() else result


def prometheus_label_name(attribute: str) -> str:
    """The Prometheus label of an OTel attribute key (invalid characters become `_`)."""
    label = re.sub(r"[^a-zA-Z0-9_]", "_", attribute)
    return f"key_{label}" if label[:1].isdigit() else label


def _series_names(instrument: Instrument, namespace: str) -> set[str]:
    base = prometheus_metric_name(instrument.name, instrument.unit, instrument.kind, namespace)
    if instrument.kind == "histogram":
        return {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    return {base}


def _spanmetrics(config: Config) -> tuple[list[Instrument], list[str]]:
    connector = (config.get("connectors") or {}).get("spanmetrics")
    if connector is None:
        return [], []
    prefix = connector.get("namespace", _SPANMETRICS_DEFAULT_NAMESPACE)
    prefix = f"{prefix}." if prefix else ""
    unit = (connector.get("histogram") or {}).get("unit", _SPANMETRICS_DEFAULT_UNIT)
    instruments = [Instrument(f"{prefix}calls", "counter", "")]
    instruments.append(Instrument(f"{prefix}duration", "histogram", unit))
    dimensions = [
        *_SPANMETRICS_DEFAULT_DIMENSIONS,
        *(d["name"] for d in connector.get("dimensions") or []),
    ]
    return instruments, dimensions


def _exporter_namespace(config: Config) -> str:
    return str(((config.get("exporters") or {}).get("prometheus") or {}).get("namespace") or "")


def expected_prometheus_names(config: Config) -> frozenset[str]:
    """Every series name Prometheus can hold: the SDK's instruments plus spanmetrics."""
    namespace = _exporter_namespace(config)
    instruments = [*SDK_INSTRUMENTS, *_spanmetrics(config)[0]]
    return frozenset(name for inst in instruments for name in _series_names(inst, namespace))


def expected_prometheus_labels(config: Config) -> frozenset[str]:
    """Every label those series can carry."""
    keys = SDK_ATTRIBUTES | set(_spanmetrics(config)[1])
    return frozenset({prometheus_label_name(k) for k in keys} | _PROMETHEUS_LABELS)


# ---------------------------------------------------------------- PromQL and the dashboard

_PROMQL_STRING: Final = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_PROMQL_GROUPING: Final = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)"
)
_PROMQL_TOKEN: Final = re.compile(r"\d[\w.]*|\$\{?\w+\}?|[a-zA-Z_:][\w:]*(?=\s*(\(?))|\S")
_PROMQL_KEYWORDS: Final = frozenset(
    {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring", "group_left",
     "group_right", "atan2", "inf", "nan", "Inf", "NaN"}
)  # fmt: skip


def _without_strings(expr: str) -> str:
    return _PROMQL_STRING.sub('""', expr)


def promql_metric_names(expr: str) -> set[str]:
    """Metric names selected by a PromQL expression (function names, keywords, labels and
    Grafana variables left out)."""
    text = re.sub(r"\[[^\]]*\]", " ", _without_strings(expr))
    text = _PROMQL_GROUPING.sub(" ", re.sub(r"\{[^}]*\}", " ", text))
    names: set[str] = set()
    for match in _PROMQL_TOKEN.finditer(text):
        token, is_call = match.group(0), bool(match.group(1))
        if (
            re.fullmatch(r"[a-zA-Z_:][\w:]*", token)
            and not is_call
            and token not in _PROMQL_KEYWORDS
        ):
            names.add(token)
    return names


def promql_label_names(expr: str) -> set[str]:
    """Label names used in matchers and in by/without/on/ignoring/group_* clauses."""
    text = _without_strings(expr)
    labels = {
        m.group(1)
        for matchers in re.findall(r"\{([^}]*)\}", text)
        for m in re.finditer(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", matchers)
    }
    for group in _PROMQL_GROUPING.findall(text):
        labels.update(label.strip() for label in group.split(",") if label.strip())
    return labels


def _label_values_query(query: str) -> tuple[str, str] | None:
    """(selector, label) of Grafana's `label_values(selector, label)` or `label_values(label)`."""
    match = re.fullmatch(r"\s*label_values\((.*)\)\s*", query, re.DOTALL)
    if match is None:
        return None
    inner, depth = match.group(1), 0
    for index in range(len(inner) - 1, -1, -1):
        depth += {"}": 1, "{": -1, ")": 1, "(": -1}.get(inner[index], 0)
        if inner[index] == "," and depth == 0:
            return inner[:index].strip(), inner[index + 1 :].strip()
    return "", inner.strip()


@dataclass(frozen=True)
class _Query:
    where: str
    expr: str
    labels: frozenset[str] = frozenset()  # labels the query names outside its PromQL
    needs_metric: bool = True


def _dashboard_queries(dashboard: Config, prometheus_uid: str) -> list[_Query]:
    """Every Prometheus target and query variable of a dashboard."""
    queries: list[_Query] = []
    for panel in _all_panels(dashboard):
        for target in panel.get("targets") or []:
            uid = (target.get("datasource") or panel.get("datasource") or {}).get("uid")
            if uid == prometheus_uid and target.get("expr"):
                queries.append(_Query(f"panel {panel.get('title')!r}", str(target["expr"])))
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if (variable.get("datasource") or {}).get("uid") != prometheus_uid:
            continue
        query = variable.get("query")
        query = str(query.get("query", "") if isinstance(query, dict) else query or "")
        where = f"variable {variable.get('name')!r}"
        label_values = _label_values_query(query)
        if label_values is None:
            queries.append(_Query(where, query))
        else:
            selector, label = label_values
            queries.append(_Query(where, selector, frozenset({label}), needs_metric=False))
    return queries


def _all_panels(dashboard: Config) -> list[Config]:
    found: list[Config] = []
    pending = list(dashboard.get("panels") or [])
    while pending:
        panel = pending.pop(0)
        found.append(panel)
        pending.extend(panel.get("panels") or [])
    return found


def dashboard_problems(
    dashboard: Config,
    names: frozenset[str],
    labels: frozenset[str],
    datasource_uids: dict[str, str],
) -> list[str]:
    """Every panel uses a provisioned data source and every Prometheus query selects only
    metrics and labels that the stack produces (`datasource_uids`: type -> uid)."""
    problems: list[str] = []
    for panel in _all_panels(dashboard):
        targets = panel.get("targets") or []
        for source in [panel.get("datasource"), *(t.get("datasource") for t in targets)]:
            if source and source.get("uid") not in datasource_uids.values():
                problems.append(f"panel {panel.get('title')!r}: unknown data source {source}")
    queries = _dashboard_queries(dashboard, datasource_uids.get("prometheus", ""))
    if not queries:
        problems.append("the dashboard has no Prometheus query")
    for query in queries:
        selected = promql_metric_names(query.expr)
        if not selected and query.needs_metric:
            problems.append(f"{query.where}: no metric in {query.expr!r}")
        for name in sorted(selected - names):
            problems.append(f"{query.where}: metric {name!r} is not produced by the stack")
        for label in sorted((promql_label_names(query.expr) | query.labels) - labels):
            problems.append(f"{query.where}: label {label!r} is not produced by the stack")
    return problems
