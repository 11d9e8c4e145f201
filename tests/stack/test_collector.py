"""The collector's configuration (otel-collector/config.yaml): complete pipelines, no unused
component but the allow-listed debug exporter, memory_limiter first and batch in every
pipeline, the spanmetrics connector from traces to metrics, and the pinned version it names.

No collector runs here to complain, so the checks read the file, and each one is also run on a
broken copy to prove that it can fail.
"""

from __future__ import annotations

import copy

from tests import stack_checks as sc
from tests.stack.conftest import COLLECTOR_CONFIG_PATH, Config

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
