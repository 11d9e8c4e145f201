"""The compose file and what it wires together: docker-compose.yml against the Compose
Specification schema (check-jsonschema's vendored copy, offline), published ports, mounts,
pinned images, start order, and the links collector -> Jaeger / Prometheus and Grafana ->
its data sources.

A stack that validates but points a service at the wrong port or path fails only once it
runs, so the links are checked here, each check also on a broken copy.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.http.trace_exporter import DEFAULT_ENDPOINT

from tests import compose_checks as cc
from tests import stack_checks as sc
from tests.prometheus_server import run_promtool
from tests.stack.conftest import COMPOSE_PATH, GRAFANA_DIR, Config

PROMETHEUS_CONFIG_PATH = sc.REPO_ROOT / "otel-collector" / "prometheus.yml"
DATA_FOLDER = "./otel-collector/data"

# The SDK's OTLP defaults: SPEC says OTEL_EXPORTER_OTLP_ENDPOINT defaults to
# http://localhost:4318 (http/protobuf); 4317 is OTLP/gRPC's default port (OTLP spec).
SDK_HTTP_ENDPOINT = "http://localhost:4318"
OTLP_GRPC_PORT = 4317


@pytest.fixture(scope="module")
def prometheus() -> Config:
    return sc.load_yaml(PROMETHEUS_CONFIG_PATH)


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
    result = run_promtool("check", "config", str(PROMETHEUS_CONFIG_PATH))
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- (h) the checks can fail


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
