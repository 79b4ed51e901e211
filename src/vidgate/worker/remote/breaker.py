"""Circuit breakers, one per route of each model: a route that keeps refusing is skipped.

After ``breaker_failures`` clear submit failures (refusals, no connection, a refused key)
within ``breaker_window_s``, a route's circuit opens: submits pass it over for
``breaker_cooldown_s``. Then one run probes it (the circuit is half open): a success closes
it, a failure opens it for another cool-down. An accepted submit closes it.

The state is this process's own, in memory: each worker process learns a route's health
from its own submits, and a restart starts with every circuit closed. That is enough to
stop sending every run to a provider that refuses them all; the failures a second process
sees are counted there. ``/readyz`` and ``/metrics`` show the view of the process asked.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vidgate.metrics import Metrics
from vidgate.runs.routing import Route

Clock = Callable[[], float]


@dataclass
class _Circuit:
    failures: deque[float] = field(default_factory=deque)
    open_until: float | None = None
    probing_since: float | None = None


class RouteBreakers:
    """The circuits of every route this process submits to, by (model, provider)."""

    def __init__(self, *, clock: Clock = time.monotonic, metrics: Metrics | None = None) -> None:
        self._clock = clock
        self._metrics = metrics
        self._circuits: dict[tuple[str, str], _Circuit] = {}

    def admit(self, model: str, route: Route) -> float | None:
        """None if a submit may go to the route now (it may be the probe); else the seconds
        until it may be tried again."""
        circuit = self._circuits.get((model, route.provider))
        if circuit is None or circuit.open_until is None:
            return None
        now = self._clock()
        if now < circuit.open_until:
            return circuit.open_until - now
        probe = circuit.probing_since
        if probe is not None and now - probe < route.breaker_cooldown_s:
            return route.breaker_cooldown_s - (now - probe)  # another run is probing it
        circuit.probing_since = now  # this submit is the probe
        return None

    def failed(self, model: str, route: Route) -> None:
        """A clear failure of a submit to the route."""
        circuit = self._circuits.setdefault((model, route.provider), _Circuit())
        now = self._clock()
        if circuit.open_until is not None:  # the probe failed: another cool-down
            self._open(model, route, circuit, now)
            return
        circuit.failures.append(now)
        while circuit.failures and circuit.failures[0] <= now - route.breaker_window_s:
            circuit.failures.popleft()
        if len(circuit.failures) >= route.breaker_failures:
            self._open(model, route, circuit, now)

    def succeeded(self, model: str, route: Route) -> None:
        """The route accepted a submit: its circuit closes."""
        circuit = self._circuits.pop((model, route.provider), None)
        if circuit is not None and circuit.open_until is not None and self._metrics:
            self._metrics.route_state(model, route.provider, open_=False)

    def unresolved(self, model: str, route: Route) -> None:
        """A submit to the route ended with its outcome unknown: a probe counts as failed."""
        circuit = self._circuits.get((model, route.provider))
        if circuit is not None and circuit.probing_since is not None:
            self._open(model, route, circuit, self._clock())

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """The routes that are not simply healthy, as ``/readyz`` shows them."""
        now = self._clock()
        shown: dict[str, dict[str, Any]] = {}
        for (model, provider), circuit in sorted(self._circuits.items()):
            if circuit.open_until is None:
                shown[f"{model}/{provider}"] = {
                    "state": "closed",
                    "recentFailures": len(circuit.failures),
                }
            elif now < circuit.open_until:
                shown[f"{model}/{provider}"] = {
                    "state": "open",
                    "retryInSeconds": round(circuit.open_until - now, 1),
                }
            else:
                shown[f"{model}/{provider}"] = {"state": "half-open"}
        return shown

    def _open(self, model: str, route: Route, circuit: _Circuit, now: float) -> None:
        circuit.open_until = now + route.breaker_cooldown_s
        circuit.probing_since = None
        circuit.failures.clear()
        if self._metrics is not None:
            self._metrics.route_state(model, route.provider, open_=True)
