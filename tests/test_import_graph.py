"""The package's import graph has no cycle: data flows config -> pool -> retry -> telemetry."""

from __future__ import annotations

import grimp


def test_no_module_imports_itself_back() -> None:
    # type-checking-only imports count too: a cycle hidden behind TYPE_CHECKING is still one
    graph = grimp.build_graph("resilient_http")
    cycles = sorted(
        graph.find_shortest_chain(importer=imported, imported=importer) or ()
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if graph.chain_exists(importer=imported, imported=importer)
    )
    assert cycles == []


def test_the_core_modules_are_layered() -> None:
    """The pure parts never import the parts that drive aiohttp or report."""
    graph = grimp.build_graph("resilient_http")
    pure = ("resilient_http.config", "resilient_http.retry", "resilient_http._strategies")
    driving = ("resilient_http.session", "resilient_http._retrying", "resilient_http._attempt")
    for low in pure:
        for high in driving:
            assert not graph.chain_exists(importer=low, imported=high), (low, high)
