"""A project's sequence of runs: the scripted ones, then generated ones that keep arriving.

Run `n` (0-based) is either the n-th scripted run or a generated one computed on demand from
the seed and its index, so a timeline never grows in memory: only a small cache of recently
used plans is kept. Only the last `retention` runs are visible, like a CI server's retention
policy; every lookup is O(1) or O(runs asked for).
"""

from __future__ import annotations

import bisect
import dataclasses
import random
from collections import OrderedDict
from collections.abc import Sequence

from ciwatch.simulator.plans import FOREVER, RunPlan, build_attempts, ms, sha_for
from ciwatch.simulator.scenario import GeneratorSpec, JobSpec, RerunSpec

AUTHORS = ("alice", "bob", "carol", "dave", "erin", "frank")
MESSAGES = (
    "Fix flaky login test",
    "Bump dependencies",
    "Add retry to uploader",
    "Refactor billing client",
    "Update README",
    "Speed up the build cache",
    "Handle empty payloads",
    "Tune database pool size",
)
_CACHE_SIZE = 256


class Generator:
    """Generated run k is created at `since + k * every`; everything else is drawn from a
    random generator seeded with (seed, key, k), so it is the same on every request."""

    def __init__(
        self, spec: GeneratorSpec, refs: Sequence[str], jobs: Sequence[JobSpec], key: str
    ) -> None:
        self.every = max(ms(spec.every), 1)
        self.since = ms(spec.since) if spec.since is not None else -20 * self.every
        self.refs = tuple(spec.refs or refs)
        self.jobs = tuple(jobs)
        self.key = key
        self.spec = spec
        self.words = [word for word, _ in spec.results]
        self.weights = [weight for _, weight in spec.results]
        # The longest a generated run can keep changing: queue, run, and a re-run as long.
        rerun_span = 0 if spec.rerun is None else ms(spec.rerun.after) + ms(spec.duration[1])
        self.max_queue = ms(spec.queue[1])
        self.max_span = self.max_queue + ms(spec.duration[1]) + rerun_span

    def created(self, k: int) -> int:
        return self.since + k * self.every

    def index_at(self, now: int) -> int:
        """The index of the last run created at or before `now` (may be negative)."""
        return (now - self.since) // self.every

    def plan(self, k: int, n: int, seed: int) -> RunPlan:
        rng = random.Random(f"{seed}/{self.key}/{k}")
        ref = self.refs[0] if rng.random() < 0.6 else rng.choice(self.refs)
        result = rng.choices(self.words, self.weights)[0]
        queue = rng.randint(ms(self.spec.queue[0]), ms(self.spec.queue[1]))
        duration = rng.randint(ms(self.spec.duration[0]), ms(self.spec.duration[1]))
        rerun = None
        spec_rerun = self.spec.rerun
        if spec_rerun is not None and result != "success" and rng.random() < spec_rerun.probability:
            rerun = RerunSpec(after=spec_rerun.after, result=spec_rerun.result)
        created = self.created(k)
        attempts = build_attempts(created, queue, duration, result, self.jobs, rerun)
        author = rng.choice(AUTHORS)
        message = rng.choice(MESSAGES)
        event = "schedule" if rng.random() < 0.05 else "push"
        sha = sha_for(f"{seed}/{self.key}/{k}")
        return RunPlan(n, ref, sha, event, author, message, attempts)


class Timeline:
    """Scripted plans (sorted by creation) followed by the generator's, strictly later ones."""

    def __init__(
        self,
        key: str,
        scripted: Sequence[RunPlan],
        generator: Generator | None,
        retention: int,
        seed: int,
    ) -> None:
        self.key = key
        self.scripted = tuple(scripted)
        self._created = [plan.created for plan in self.scripted]
        self._last_events = [plan.last_event() for plan in self.scripted]
        self.generator = generator
        self.retention = max(retention, 1)
        self.seed = seed
        self._k0 = 0
        if generator is not None and self.scripted:
            self._k0 = max(0, generator.index_at(self._created[-1]) + 1)
        self._cache: OrderedDict[int, RunPlan] = OrderedDict()

    def count(self, now: int) -> int:
        """How many runs have been created at or before `now`."""
        total = bisect.bisect_right(self._created, now)
        if self.generator is not None:
            total += max(0, self.generator.index_at(now) - self._k0 + 1)
        return total

    def visible(self, now: int) -> range:
        """Run indexes that exist at `now`, oldest first (older ones are past retention)."""
        hi = self.count(now)
        return range(max(0, hi - self.retention), hi)

    def plan(self, n: int) -> RunPlan:
        cached = self._cache.get(n)
        if cached is not None:
            self._cache.move_to_end(n)
            return cached
        if n < len(self.scripted):
            return self.scripted[n]
        if self.generator is None:
            raise IndexError(n)
        plan = self.generator.plan(self._k0 + n - len(self.scripted), n, self.seed)
        self._cache[n] = plan
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return plan

    def commits_between(self, now: int, base: str, head: str) -> list[RunPlan] | None:
        """The runs whose commits make `base..head` on `head`'s ref, oldest first, one per SHA
        (the simulator's history of a ref is the SHAs its runs built): from the newest visible
        run of `head` back to, not including, the newest earlier run of `base` on that ref.
        None when no visible run built `head`; when `base` is past retention, every visible
        run of the ref up to `head`."""
        window = self.visible(now)
        end = next((n for n in reversed(window) if self.plan(n).sha == head), None)
        if end is None:
            return None
        ref = self.plan(end).ref
        found: dict[str, RunPlan] = {}
        for n in range(end, window.start - 1, -1):
            plan = self.plan(n)
            if plan.ref != ref:
                continue
            if plan.sha == base:
                break
            found.setdefault(plan.sha, plan)
        return list(found.values())[::-1]

    def changed_after(self, since: int, now: int) -> list[int]:
        """Visible run indexes that may have changed after `since`: a superset of the runs whose
        `updated` is later than `since`, found without looking at older runs."""
        window = self.visible(now)
        found = [
            n for n in range(min(len(self.scripted), window.stop)) if self._last_events[n] > since
        ]
        if self.generator is not None:
            first_k = self.generator.index_at(since - self.generator.max_span)
            first_n = len(self.scripted) + max(first_k - self._k0, 0)
            found += range(max(first_n, len(self.scripted)), window.stop)
        return [n for n in found if n >= window.start]

    def waiting(self, now: int) -> list[int]:
        """Visible runs whose first attempt is still queued at `now`, oldest first."""
        window = self.visible(now)
        found = [n for n in range(min(len(self.scripted), window.stop)) if self._waits(n, now)]
        if self.generator is not None:
            first_k = self.generator.index_at(now - self.generator.max_queue)
            first_n = len(self.scripted) + max(first_k - self._k0, 0)
            found += [n for n in range(first_n, window.stop) if self._waits(n, now)]
        return [n for n in found if n >= window.start]

    def _waits(self, n: int, now: int) -> bool:
        return self.plan(n).attempts[0].started > now


def number_plans(plans: Sequence[RunPlan]) -> list[RunPlan]:
    """Scripted plans in creation order, numbered 0, 1, 2…"""
    ordered = sorted(plans, key=lambda plan: plan.created)
    return [dataclasses.replace(plan, n=n) for n, plan in enumerate(ordered)]


__all__ = ["FOREVER", "Generator", "Timeline", "number_plans"]
