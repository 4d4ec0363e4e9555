"""The simulator server: one aiohttp application, one prefix per simulated CI system
(`/gitlab`, `/github`, `/jenkins`, `/azure`: each provider spec's `simulator` module, mounted at
`/<kind>`), request counters and fault injection in front of them."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from types import TracebackType

from aiohttp import web

from ciwatch.clock import Clock, SystemClock
from ciwatch.providers.registry import SIMULATED
from ciwatch.simulator.context import Context
from ciwatch.simulator.fault_responses import FaultResponder
from ciwatch.simulator.faults import Fault, FaultBook
from ciwatch.simulator.httputil import Handler, Stats, json_response
from ciwatch.simulator.scenario import PROVIDERS, Scenario

CONTROL = "/_simulator"
RESET = 0  # the status counted for a connection closed without an answer


def provider_of(path: str) -> str | None:
    head = path.split("/", 2)[1] if path.startswith("/") else ""
    return head if head in PROVIDERS else None


class Simulator:
    """A simulated GitLab, GitHub, Jenkins and Azure Pipelines (every kind whose provider spec
    names a simulator module); all times come from the injected clock.

    `stats` counts requests; `faults` (or `add_fault` / `clear_faults`) breaks and heals
    targets at run time.
    """

    def __init__(self, scenario: Scenario, clock: Clock | None = None) -> None:
        self.scenario = scenario
        self.clock = clock or SystemClock()
        self.ctx = Context(scenario, self.clock)
        self.faults = FaultBook(scenario.faults, seed=scenario.seed)
        self.stats = Stats()
        self._stopping = asyncio.Event()
        self._responder = FaultResponder(self.ctx, self._stopping)

    def add_fault(self, fault: Fault) -> Fault:
        return self.faults.add_fault(fault)

    def clear_faults(self) -> None:
        self.faults.clear_faults()

    @property
    def held_requests(self) -> int:
        """Requests a `slow` or `timeout` fault is holding right now."""
        return self._responder.held

    def app(self) -> web.Application:
        """A fresh aiohttp application serving this simulator's state."""
        self._stopping.clear()  # serving (again): faults may hold requests
        app = web.Application(middlewares=[self._front])
        for kind, module in SIMULATED.items():
            # A simulator module's `API` takes the shared context and gives its aiohttp app.
            api = importlib.import_module(module).API
            app.add_subapp(f"/{kind}", api(self.ctx).app())
        app.router.add_get(f"{CONTROL}/stats", self._stats)
        return app

    async def _stats(self, request: web.Request) -> web.Response:
        return json_response(self.stats.snapshot())

    @web.middleware
    async def _front(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path.startswith(CONTROL):
            return await handler(request)
        provider = provider_of(path)
        paths = (path, request.rel_url.raw_path)
        fault = self.faults.pick(provider, paths, self.ctx.now() / 1000)
        status = RESET
        try:
            if fault is None:
                response: web.StreamResponse | None = await handler(request)
            else:
                response = await self._responder.respond(fault, provider, request, handler)
            if response is None:  # hung up: aiohttp's write to the closed transport is a no-op
                return web.Response(status=500)
            status = response.status
            return response
        except web.HTTPException as problem:
            status = problem.status
            raise
        finally:
            self.stats.count(provider, path, status)

    def stopping(self) -> None:
        """Wake every request held by a `slow` or `timeout` fault (they then hang up)."""
        self._stopping.set()


class RunningSimulator:
    """A started simulator: its URLs, and `stop()` (also an async context manager)."""

    def __init__(self, sim: Simulator, runner: web.AppRunner, url: str) -> None:
        self.sim = sim
        self.url = url
        self.gitlab_url = f"{url}/gitlab"
        self.github_url = f"{url}/github"
        self.jenkins_url = f"{url}/jenkins"
        self.azure_url = f"{url}/azure"
        self._runner = runner

    async def stop(self) -> None:
        self.sim.stopping()
        with contextlib.suppress(RuntimeError):
            await self._runner.cleanup()

    async def __aenter__(self) -> RunningSimulator:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def start_simulator(
    sim: Simulator, host: str = "127.0.0.1", port: int = 0
) -> RunningSimulator:
    """Serve `sim` on host:port (port 0: any free port) until `stop()`."""
    runner = web.AppRunner(
        sim.app(), handler_cancellation=True, shutdown_timeout=1.0, access_log=None
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else ("::1" if host == "::" else host)  # noqa: S104
    if ":" in shown:
        shown = f"[{shown}]"
    return RunningSimulator(sim, runner, f"http://{shown}:{bound}")
