"""Static verification of the bundled collector stack (docker-compose.yml, otel-collector/).

No Docker engine runs here, so the stack is checked as files: the compose file against the
Compose Specification schema (check-jsonschema's vendored copy, offline), the collector's
pipelines, ports, mounts and links, and the Grafana dashboard's metric names. The check
functions live in tests/stack_checks.py (collector configuration), tests/compose_checks.py
(compose file and links) and tests/prometheus_names.py (metric names, PromQL, the dashboard);
they take parsed dicts, so the negative tests below run them on mutated copies to prove that
each check can fail.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.http.trace_exporter import DEFAULT_ENDPOINT

from tests import compose_checks as cc
from tests import prometheus_names as pn
from tests import stack_checks as sc

COMPOSE_PATH = sc.REPO_ROOT / "docker-compose.yml"
COLLECTOR_CONFIG_PATH = sc.REPO_ROOT / "otel-collector" / "config.yaml"
PROMETHEUS_CONFIG_PATH = sc.REPO_ROOT / "otel-collector" / "prometheus.yml"
GRAFANA_DIR = sc.REPO_ROOT / "otel-collector" / "grafana"
DASHBOARD_PATH = GRAFANA_DIR / "dashboards" / "resilient-http.json"
DATA_FOLDER = "./otel-collector/data"

# The SDK's OTLP defaults: SPEC says OTEL_EXPORTER_OTLP_ENDPOINT defaults to
# http://localhost:4318 (http/protobuf); 4317 is OTLP/gRPC's default port (OTLP spec).
SDK_HTTP_ENDPOINT = "http://localhost:4318"
OTLP_GRPC_PORT = 4317

Config = dict[str, Any]


@pytest.fixture(scope="module")
def compose() -> Config:
    return sc.load_yaml(COMPOSE_PATH)


@pytest.fixture(scope="module")
def collector() -> Config:
    return sc.load_yaml(COLLECTOR_CONFIG_PATH)


@pytest.fixture(scope="module")
def prometheus() -> Config:
    return sc.load_yaml(PROMETHEUS_CONFIG_PATH)


@pytest.fixture(scope="module")
def dashboard() -> Config:
    data: Config = json.loads(DASHBOARD_PATH.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def datasource_uids() -> dict[str, str]:
    provisioned = sc.load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "datasources.yaml")
    return {str(ds["type"]): str(ds["uid"]) for ds in provisioned["datasources"]}


# ---------------------------------------------------------------- (a) compose schema


def _check_compose_schema(path: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    """Run check-jsonschema with its vendored Compose Specification schema. The proxies point
    at a closed port, so any attempt to fetch a schema over the network would fail the run."""
    tool = Path(sys.executable).parent / "check-jsonschema"
    unreachable = "http://127.0.0.1:9"
    env = {
        **os.environ,
        "HTTP_PROXY": unreachable,
        "HTTPS_PROXY": unreachable,
        "http_proxy": unreachable,
        "https_proxy": unreachable,
        "NO_PROXY": "",
        "no_proxy": "",
        "XDG_CACHE_HOME": str(cache),
    }
    return subprocess.run(
        [str(tool), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_compose_file_is_valid_against_the_compose_spec_offline(tmp_path: Path) -> None:
    result = _check_compose_schema(COMPOSE_PATH, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_check_rejects_an_invalid_file(tmp_path: Path, compose: Config) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["jaeger"]["restart"] = 3
    broken["services"]["jaeger"]["healthcheck"]["tset"] = ["CMD", "true"]
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    result = _check_compose_schema(path, tmp_path)
    assert result.returncode == 1
    assert "restart" in result.stdout
    assert "tset" in result.stdout


# ---------------------------------------------------------------- (b) collector pipelines


def test_collector_pipelines_are_complete(collector: Config) -> None:
    assert sc.collector_config_problems(collector) == []


def test_unused_allow_list_is_exactly_the_debug_exporter(collector: Config) -> None:
    assert {("exporters", "debug")} == sc.UNUSED_COMPONENT_ALLOW_LIST
    assert "debug" in collector["exporters"]
    pipelines = collector["service"]["pipelines"].values()
    assert all("debug" not in p["exporters"] for p in pipelines), "debug is off by default"


def test_spanmetrics_connector_links_traces_to_metrics(collector: Config) -> None:
    pipelines = collector["service"]["pipelines"]
    feeds = [name for name, p in pipelines.items() if "spanmetrics" in p["exporters"]]
    fed = [name for name, p in pipelines.items() if "spanmetrics" in p["receivers"]]
    assert [n.split("/")[0] for n in feeds] == ["traces"]
    assert [n.split("/")[0] for n in fed] == ["metrics"]
    connector = collector["connectors"]["spanmetrics"]
    assert connector["histogram"]["unit"] == "s"
    assert [d["name"] for d in connector["dimensions"]] == [
        "server.address",
        "server.port",
        "http.request.method",
        "http.response.status_code",
    ]


def test_config_names_the_pinned_collector_version(compose: Config) -> None:
    image = compose["services"][sc.COLLECTOR_SERVICE]["image"]
    version = image.rsplit(":", 1)[1]
    config_text = COLLECTOR_CONFIG_PATH.read_text(encoding="utf-8")
    assert f"opentelemetry-collector-contrib:{version}" in config_text


# ---------------------------------------------------------------- (c) ports


def test_receiver_ports_match_the_sdk_defaults_and_compose(
    collector: Config, compose: Config
) -> None:
    assert DEFAULT_ENDPOINT.rstrip("/") == SDK_HTTP_ENDPOINT, "the OTLP exporter's default moved"
    http_port = cc.endpoint_port(SDK_HTTP_ENDPOINT)
    assert cc.receiver_port_problems(collector, compose, OTLP_GRPC_PORT, http_port) == []


def test_health_check_extension_is_published(collector: Config, compose: Config) -> None:
    port = cc.endpoint_port(collector["extensions"]["health_check"]["endpoint"])
    assert cc.published_ports(compose["services"][sc.COLLECTOR_SERVICE])[port] == port


# ---------------------------------------------------------------- (d) mounts


def test_file_export_lands_in_the_mounted_data_folder(collector: Config, compose: Config) -> None:
    assert cc.file_export_problems(collector, compose, DATA_FOLDER) == []
    assert (sc.REPO_ROOT / DATA_FOLDER / ".gitkeep").exists()


@pytest.mark.parametrize(
    ("service", "flag", "host_file"),
    [
        ("otel-collector", "--config=", "./otel-collector/config.yaml"),
        ("prometheus", "--config.file=", "./otel-collector/prometheus.yml"),
    ],
)
def test_config_files_are_mounted_where_the_command_reads_them(
    compose: Config, service: str, flag: str, host_file: str
) -> None:
    spec = compose["services"][service]
    container_path = next(a.removeprefix(flag) for a in spec["command"] if a.startswith(flag))
    mount = next(m for m in cc.mounts(spec) if m.target == container_path)
    assert Path(mount.source) == Path(host_file)
    assert mount.read_only


def test_grafana_provisioning_is_mounted(compose: Config) -> None:
    grafana = compose["services"]["grafana"]
    assert grafana["profiles"] == ["grafana"]
    targets = {m.target: Path(m.source) for m in cc.mounts(grafana)}
    assert targets["/etc/grafana/provisioning"] == Path("./otel-collector/grafana/provisioning")
    providers = sc.load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yaml")
    dashboards_path = providers["providers"][0]["options"]["path"]
    assert targets[dashboards_path] == Path("./otel-collector/grafana/dashboards")


# ---------------------------------------------------------------- (e) images


def test_every_image_is_pinned(compose: Config) -> None:
    assert cc.image_pin_problems(compose) == []


def test_services_wait_for_their_dependencies(compose: Config) -> None:
    services = compose["services"]
    for name, spec in services.items():
        for dependency, condition in (spec.get("depends_on") or {}).items():
            wanted = (
                "service_healthy" if "healthcheck" in services[dependency] else "service_started"
            )
            assert condition["condition"] == wanted, f"{name} -> {dependency}"
    no_healthcheck = {name for name, spec in services.items() if "healthcheck" not in spec}
    assert no_healthcheck == {sc.COLLECTOR_SERVICE}, "only the FROM-scratch collector has no probe"


# ---------------------------------------------------------------- (f) links


def test_jaeger_receives_what_the_collector_sends(collector: Config, compose: Config) -> None:
    assert cc.jaeger_link_problems(collector, compose) == []
    # The port check holds for Jaeger's built-in all-in-one configuration (OTLP gRPC on
    # 4317, JAEGER_LISTEN_HOST=0.0.0.0 in the image): no --config may replace it.
    assert "command" not in compose["services"]["jaeger"]


def test_prometheus_scrapes_what_the_collector_exposes(
    collector: Config, prometheus: Config, compose: Config
) -> None:
    assert cc.prometheus_link_problems(collector, prometheus) == []


def test_grafana_data_sources_point_at_the_services(compose: Config) -> None:
    provisioned = sc.load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "datasources.yaml")
    urls = {str(ds["type"]): str(ds["url"]) for ds in provisioned["datasources"]}
    assert urls == {"prometheus": "http://prometheus:9090", "jaeger": "http://jaeger:16686"}
    assert 9090 in cc.published_ports(compose["services"]["prometheus"])
    assert 16686 in cc.published_ports(compose["services"]["jaeger"])


def test_promtool_accepts_the_prometheus_config() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not on PATH (it ships with Prometheus); not installed by tests")
    result = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_CONFIG_PATH)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- (g) metric names


@pytest.mark.parametrize(
    ("name", "unit", "kind", "expected"),
    [
        # Examples of github.com/prometheus/otlptranslator (metric_namer.go docs and tests).
        ("http.server.request.duration", "s", "histogram", "http_server_request_duration_seconds"),
        ("requests.count", "1", "counter", "requests_count_total"),
        ("memory.usage", "By", "gauge", "memory_usage_bytes"),
        ("cpu.utilization", "1", "gauge", "cpu_utilization_ratio"),
        ("network.io", "By/s", "gauge", "network_io_bytes_per_second"),
        ("queue.size", "{item}", "updowncounter", "queue_size"),
        ("already_seconds", "s", "histogram", "already_seconds"),
        ("jobs.total.done", "", "counter", "jobs_done_total"),
        ("up.down", "1", "updowncounter", "up_down"),
        ("2xx", "", "gauge", "_2xx"),
        # The names this stack relies on.
        ("http.client.request.duration", "s", "histogram", "http_client_request_duration_seconds"),
        (
            "http.client.open_connections",
            "{connection}",
            "updowncounter",
            "http_client_open_connections",
        ),
        ("resilient_http.retries", "{retry}", "counter", "resilient_http_retries_total"),
        ("resilient_http.pool.limit", "{connection}", "gauge", "resilient_http_pool_limit"),
        ("traces.span.metrics.calls", "", "counter", "traces_span_metrics_calls_total"),
        ("traces.span.metrics.duration", "s", "histogram", "traces_span_metrics_duration_seconds"),
        (
            "traces.span.metrics.duration",
            "ms",
            "histogram",
            "traces_span_metrics_duration_milliseconds",
        ),
    ],
)
def test_prometheus_metric_name(name: str, unit: str, kind: pn.Kind, expected: str) -> None:
    assert pn.prometheus_metric_name(name, unit, kind) == expected


def test_prometheus_metric_name_with_namespace() -> None:
    assert pn.prometheus_metric_name("a.b", "s", "counter", "ns") == "ns_a_b_seconds_total"


def test_prometheus_label_name() -> None:
    assert pn.prometheus_label_name("http.connection.state") == "http_connection_state"
    assert pn.prometheus_label_name("resilient_http.retry.reason") == "resilient_http_retry_reason"
    assert pn.prometheus_label_name("2xx") == "key_2xx"


def test_expected_names_cover_the_sdk_and_spanmetrics(collector: Config) -> None:
    names = pn.expected_prometheus_names(collector)
    assert {
        "http_client_request_duration_seconds_bucket",
        "http_client_request_duration_seconds_count",
        "http_client_open_connections",
        "http_client_connection_duration_seconds_sum",
        "http_client_active_requests",
        "resilient_http_request_duration_seconds_bucket",
        "resilient_http_pool_wait_duration_seconds_bucket",
        "resilient_http_connection_acquired_total",
        "resilient_http_retries_total",
        "resilient_http_retries_suppressed_total",
        "resilient_http_pool_limit",
        "traces_span_metrics_calls_total",
        "traces_span_metrics_duration_seconds_bucket",
    } <= names
    assert "traces_span_metrics_duration_milliseconds_bucket" not in names
    assert len(names) == 3 * 4 + 6 + 1 + 3  # 4 SDK histograms, 6 other SDK, spanmetrics 1 + 3


@pytest.mark.parametrize(
    ("expr", "metrics", "labels"),
    [
        (
            'histogram_quantile(0.95, sum by (le, server_address) (rate(a_bucket{job=~"$s"}'
            "[$__rate_interval])))",
            {"a_bucket"},
            {"le", "server_address", "job"},
        ),
        (
            'sum(rate(x_total{r="1"}[5m])) by (r) / ignoring(r) group_left sum(y) offset 1h',
            {"x_total", "y"},
            {"r"},
        ),
        ('max_over_time(g{a="}{",b!~"x"}[1m:30s]) > 0.5 and on (c) h', {"g", "h"}, {"a", "b", "c"}),
    ],
)
def test_promql_extraction(expr: str, metrics: set[str], labels: set[str]) -> None:
    assert pn.promql_metric_names(expr) == metrics
    assert pn.promql_label_names(expr) == labels


def test_dashboard_queries_only_metrics_the_stack_produces(
    collector: Config, dashboard: Config, datasource_uids: dict[str, str]
) -> None:
    names = pn.expected_prometheus_names(collector)
    labels = pn.expected_prometheus_labels(collector)
    assert pn.dashboard_problems(dashboard, names, labels, datasource_uids) == []


def test_dashboard_covers_the_pool_and_retry_questions(dashboard: Config) -> None:
    exprs = " ".join(
        t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if "expr" in t
    )
    for needle in (
        "http_client_open_connections",  # pool size and state
        "resilient_http_pool_wait_duration_seconds_bucket",  # pool wait p95
        'resilient_http_connection_reused="true"',  # reuse ratio
        "resilient_http_retries_total",  # retries by reason
        "resilient_http_retries_suppressed_total",  # suppressed retries
        'http_response_status_code=~"429|503"',  # throttled share
        "histogram_quantile(0.99, sum by (le, server_address)",  # p99 per upstream
    ):
        assert needle in exprs


# ---------------------------------------------------------------- (h) the checks can fail


def test_detects_a_pipeline_naming_an_undefined_component(collector: Config) -> None:
    broken = copy.deepcopy(collector)
    broken["service"]["pipelines"]["traces"]["exporters"].append("otlp/zipkin")
    assert any("'otlp/zipkin' is not defined" in p for p in sc.collector_config_problems(broken))


def test_detects_an_unused_component(collector: Config) -> None:
    broken = copy.deepcopy(collector)
    broken["processors"]["attributes/unused"] = {"actions": []}
    problems = sc.collector_config_problems(broken)
    assert problems == ["processor 'attributes/unused' is defined but in no pipeline"]


def test_detects_debug_when_not_allow_listed(collector: Config) -> None:
    problems = sc.collector_config_problems(collector, allow_unused=frozenset())
    assert problems == ["exporter 'debug' is defined but in no pipeline"]


def test_detects_processor_order_and_missing_batch(collector: Config) -> None:
    broken = copy.deepcopy(collector)
    broken["service"]["pipelines"]["metrics"]["processors"] = ["batch", "memory_limiter"]
    broken["service"]["pipelines"]["traces"]["processors"] = ["memory_limiter"]
    assert sc.collector_config_problems(broken) == [
        "pipeline traces: no batch processor",
        "pipeline metrics: memory_limiter is not the first processor",
    ]


def test_detects_a_connector_that_is_only_an_exporter(collector: Config) -> None:
    broken = copy.deepcopy(collector)
    del broken["service"]["pipelines"]["metrics/spanmetrics"]
    problems = sc.collector_config_problems(broken)
    assert "connector 'spanmetrics' must be an exporter and a receiver" in problems


@pytest.mark.parametrize(
    "image",
    [
        "otel/opentelemetry-collector-contrib",
        "otel/opentelemetry-collector-contrib:latest",
        "jaegertracing/jaeger:stable",
        "localhost:5000/prom/prometheus",
    ],
)
def test_detects_an_unpinned_image(compose: Config, image: str) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["jaeger"]["image"] = image
    assert cc.image_pin_problems(broken) == [
        f"service jaeger: image {image!r} is not pinned to a version"
    ]


def test_accepts_a_digest_and_a_registry_port(compose: Config) -> None:
    pinned = copy.deepcopy(compose)
    pinned["services"]["jaeger"]["image"] = "localhost:5000/jaeger@sha256:" + "0" * 64
    pinned["services"]["prometheus"]["image"] = "localhost:5000/prom/prometheus:v3.7.3"
    assert cc.image_pin_problems(pinned) == []


def test_detects_port_and_mount_mismatches(collector: Config, compose: Config) -> None:
    broken_compose = copy.deepcopy(compose)
    broken_compose["services"][sc.COLLECTOR_SERVICE]["ports"] = ["14318:4318", "4317:4317"]
    assert cc.receiver_port_problems(collector, broken_compose, 4317, 4318) == [
        "otel-collector does not publish 4318 on host port 4318"
    ]
    broken_config = copy.deepcopy(collector)
    broken_config["exporters"]["file/traces"]["path"] = "/tmp/traces.jsonl"
    assert cc.file_export_problems(broken_config, compose, DATA_FOLDER) == [
        "file/traces: /tmp/traces.jsonl is in no mounted volume of otel-collector"
    ]


def test_detects_broken_links(collector: Config, prometheus: Config, compose: Config) -> None:
    broken = copy.deepcopy(collector)
    broken["exporters"]["otlp/jaeger"]["endpoint"] = "jaeger:14250"
    assert cc.jaeger_link_problems(broken, compose) == [
        "otlp/jaeger targets port 14250, Jaeger receives on 4317"
    ]
    broken["exporters"]["prometheus"]["endpoint"] = "0.0.0.0:9464"
    assert cc.prometheus_link_problems(broken, prometheus) == [
        "Prometheus scrapes ['otel-collector:8889'], not the exporter at otel-collector:9464"
    ]


def test_detects_a_dashboard_metric_the_stack_does_not_produce(
    collector: Config, dashboard: Config, datasource_uids: dict[str, str]
) -> None:
    broken = copy.deepcopy(dashboard)
    target = next(p for p in broken["panels"] if p.get("targets"))["targets"][0]
    target["expr"] = 'sum by (server_adress) (rate(resilient_http_retries{job="x"}[5m]))'
    names = pn.expected_prometheus_names(collector)
    labels = pn.expected_prometheus_labels(collector)
    problems = pn.dashboard_problems(broken, names, labels, datasource_uids)
    assert len(problems) == 2
    assert "metric 'resilient_http_retries' is not produced by the stack" in problems[0]
    assert "label 'server_adress' is not produced by the stack" in problems[1]
