"""Prometheus names: what the stack's series are called, and what the Grafana dashboard
queries (see tests/stack_checks.py for the split).

Prometheus names follow the translation of the pinned collector's `prometheus` exporter,
`translation_strategy: UnderscoreEscapingWithSuffixes` (contrib v0.139.0 builds names with
github.com/prometheus/otlptranslator; `prometheus_metric_name` mirrors its `normalizeName`).
The dashboard check parses just enough PromQL to list the metric and label names it selects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from tests.stack_checks import REPO_ROOT, Config, load_yaml

RECORDING_RULES_PATH: Final = REPO_ROOT / "otel-collector" / "recording-rules.yml"

__all__ = [
    "SDK_ATTRIBUTES",
    "SDK_INSTRUMENTS",
    "Instrument",
    "Kind",
    "dashboard_problems",
    "expected_prometheus_labels",
    "expected_prometheus_names",
    "prometheus_label_name",
    "prometheus_metric_name",
    "promql_label_names",
    "promql_metric_names",
]

Kind = Literal["counter", "updowncounter", "gauge", "histogram"]


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
    Instrument("resilient_http.breaker.state", "gauge", "1"),
    Instrument("resilient_http.breaker.rejected", "counter", "{call}"),
    Instrument("resilient_http.concurrency.limit", "gauge", "{request}"),
    Instrument("resilient_http.hedges", "counter", "{attempt}"),
)
SDK_ATTRIBUTES: Final = frozenset(
    {"server.address", "server.port", "http.request.method", "http.response.status_code",
     "error.type", "http.connection.state", "resilient_http.connection.reused",
     "resilient_http.retry.reason", "resilient_http.suppression.reason",
     "resilient_http.pool.limit.scope", "resilient_http.pool.id",
     "resilient_http.breaker.state", "resilient_http.hedge.outcome"}
)  # fmt: skip
# Labels every series may carry besides the attributes: job/instance come from the resource
# (service.name, service.instance.id), le from histogram buckets, otel_scope_name from the
# instrumentation scope (both the collector's exporter and opentelemetry-exporter-prometheus
# add it; the analysis reads semconv http_client_* series of the SDK's scopes only).
_PROMETHEUS_LABELS: Final = frozenset({"job", "instance", "le", "otel_scope_name"})
_SPANMETRICS_DEFAULT_DIMENSIONS: Final = ("service.name", "span.name", "span.kind", "status.code")
_SPANMETRICS_DEFAULT_NAMESPACE: Final = "traces.span.metrics"
_SPANMETRICS_DEFAULT_UNIT: Final = "ms"  # v0.139.0; the config sets `s` explicitly


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
    """Every series name Prometheus can hold: the SDK's instruments, spanmetrics, and what the
    shipped recording rules (otel-collector/recording-rules.yml) record."""
    namespace = _exporter_namespace(config)
    instruments = [*SDK_INSTRUMENTS, *_spanmetrics(config)[0]]
    names = {name for inst in instruments for name in _series_names(inst, namespace)}
    rules = load_yaml(RECORDING_RULES_PATH)
    names |= {rule["record"] for group in rules["groups"] for rule in group["rules"]}
    return frozenset(names)


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
