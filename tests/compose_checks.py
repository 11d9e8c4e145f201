"""Static checks of the compose file: images, published ports, mounts, and the links from the
collector to Jaeger and Prometheus (see tests/stack_checks.py for the split).

Each check takes parsed dicts and returns a list of problems, empty when all is well.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from tests.stack_checks import COLLECTOR_SERVICE, Config, component_type

__all__ = [
    "Mount",
    "endpoint_port",
    "file_export_problems",
    "image_pin_problems",
    "jaeger_link_problems",
    "mounts",
    "prometheus_link_problems",
    "published_ports",
    "receiver_port_problems",
]


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
        n: c for n, c in (config.get("exporters") or {}).items() if component_type(n) == "file"
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
