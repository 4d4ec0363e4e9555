"""Fault injection: what can go wrong between a client and a CI server, on demand.

A `Fault` matches requests by path glob (`fnmatch` on the request path, encoded or decoded, so
`*/pipelines*` works), optional provider, a time window (`after`/`until`, seconds since the
simulator started) and either the first `count` matching requests or a `probability` (drawn from
the scenario's seed). `FaultBook` holds the active faults and is the runtime control used by
tests to break and heal a target.
"""

from __future__ import annotations

import fnmatch
import random
from dataclasses import dataclass
from typing import Literal, get_args

from ciwatch.providers.registry import SIMULATED

FaultKind = Literal[
    "status", "rate_limit", "exhausted", "slow", "timeout", "bad_json", "truncated", "html", "reset"
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
_DEFAULT_STATUS = {"status": 503, "exhausted": 403, "html": 502}
_DEFAULT_DELAY = {"slow": 2.0, "timeout": 3600.0}


@dataclass
class Fault:
    """One kind of misbehaviour; see docs/simulator.md for what each kind answers.

    `status`: the HTTP status for `status` (500/502/503…), `exhausted` (403) and `html` (200 or
    502). `retry_after`: seconds announced by `rate_limit`. `delay`: seconds for `slow` and
    `timeout` (real seconds: network time, not scenario time).
    """

    kind: FaultKind
    path: str = "*"
    provider: str | None = None
    count: int | None = None
    probability: float | None = None
    after: float | None = None
    until: float | None = None
    status: int | None = None
    retry_after: int = 60
    delay: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"kind: {self.kind!r} is not one of {', '.join(FAULT_KINDS)}")
        if self.provider is not None and self.provider not in SIMULATED:
            raise ValueError(f"provider: {self.provider!r} is not one of {', '.join(SIMULATED)}")
        if self.count is not None and self.count < 0:
            raise ValueError(f"count: {self.count} is negative")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability: {self.probability} is not between 0 and 1")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"status: {self.status} is not an HTTP status")
        if self.delay is not None and self.delay < 0:
            raise ValueError(f"delay: {self.delay} is negative")

    @property
    def http_status(self) -> int:
        return self.status if self.status is not None else _DEFAULT_STATUS.get(self.kind, 500)

    @property
    def seconds(self) -> float:
        return self.delay if self.delay is not None else _DEFAULT_DELAY.get(self.kind, 0.0)


class FaultBook:
    """The active faults, in order; the first one that matches a request is applied."""

    def __init__(self, faults: list[Fault] | None = None, *, seed: int = 1) -> None:
        self._faults: list[Fault] = []
        self._left: dict[int, int | None] = {}
        self._rng = random.Random(seed)
        for fault in faults or []:
            self.add_fault(fault)

    def add_fault(self, fault: Fault) -> Fault:
        """Activate `fault` (its `count` starts afresh) and return it, for `remove_fault`."""
        self._faults.append(fault)
        self._left[id(fault)] = fault.count
        return fault

    def remove_fault(self, fault: Fault) -> None:
        self._faults = [f for f in self._faults if f is not fault]
        self._left.pop(id(fault), None)

    def clear_faults(self) -> None:
        """Heal everything: no fault applies any more."""
        self._faults.clear()
        self._left.clear()

    @property
    def faults(self) -> list[Fault]:
        return list(self._faults)

    def pick(self, provider: str | None, paths: tuple[str, ...], elapsed: float) -> Fault | None:
        """The fault to apply to this request, counting it against the fault's `count`."""
        for fault in self._faults:
            if fault.provider is not None and fault.provider != provider:
                continue
            if fault.after is not None and elapsed < fault.after:
                continue
            if fault.until is not None and elapsed >= fault.until:
                continue
            if not any(fnmatch.fnmatchcase(path, fault.path) for path in paths):
                continue
            left = self._left.get(id(fault))
            if left is not None and left <= 0:
                continue
            if fault.probability is not None and self._rng.random() >= fault.probability:
                continue
            if left is not None:
                self._left[id(fault)] = left - 1
            return fault
        return None
