"""Per-upstream state stays bounded by the upstreams in use: a session that calls ever new hosts
lets go of the states that are as good as new once PRUNE_FROM are kept."""

from __future__ import annotations

from dataclasses import dataclass

from resilient_http._bounded import PRUNE_FROM
from resilient_http._breaker import BreakerState
from resilient_http._budget import WINDOW_SECONDS, RetryBudget
from resilient_http._per_upstream import PerUpstream
from tests.helpers import FakeClock


@dataclass
class State:
    label: str
    busy: bool = False


def test_a_new_upstream_past_the_bound_lets_go_of_the_forgettable_states_only() -> None:
    states = PerUpstream(lambda label, host, port: State(label), lambda state: not state.busy)
    kept = [states.of(f"http://busy-{n}.test/") for n in range(10)]
    for state in kept:
        state.busy = True
    for n in range(PRUNE_FROM - 10):
        states.of(f"http://idle-{n}.test/")
    assert len(states.values()) == PRUNE_FROM
    new = states.of("http://new.test/")
    assert [s.label for s in states.values()] == [s.label for s in kept] + ["new.test:80"]
    assert states.of("http://busy-3.test/") is kept[3]  # found again, not made anew
    assert states.of("http://new.test/") is new


def test_ever_new_upstreams_keep_memory_bounded() -> None:
    states = PerUpstream(lambda label, host, port: State(label), lambda state: True)
    for n in range(10 * PRUNE_FROM):
        states.of(f"http://host-{n}.test/")
    assert len(states.values()) <= PRUNE_FROM


def test_without_a_forgettable_rule_nothing_is_let_go() -> None:
    states = PerUpstream(lambda label, host, port: State(label))
    for n in range(PRUNE_FROM + 5):
        states.of(f"http://host-{n}.test/")
    assert len(states.values()) == PRUNE_FROM + 5


def test_a_circuit_is_as_good_as_new_once_its_window_has_no_call() -> None:
    circuit = BreakerState("h:1", "h", 1, window=10.0)
    assert circuit.is_empty(100.0)
    circuit.count(100.0, failed=True)
    assert not circuit.is_empty(105.0)
    assert circuit.is_empty(111.0)


def test_the_budget_lets_go_of_windows_that_have_emptied() -> None:
    clock = FakeClock()
    budget = RetryBudget(0.1, 1.0, clock)
    for n in range(PRUNE_FROM):
        budget.record_call(f"old-{n}:80")
    clock.now += WINDOW_SECONDS
    budget.record_call("recent:80")
    budget.record_call("new:80")
    assert set(budget._windows) == {"recent:80", "new:80"}
