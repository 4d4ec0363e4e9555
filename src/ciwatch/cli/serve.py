"""`ciwatch serve` and `ciwatch demo`: collection, dashboard, API and /metrics in one process.

SIGTERM and Ctrl-C stop taking new polls and requests, let in-flight ones finish, then close the
HTTP sessions and the database pool. A second Ctrl-C exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn

from ciwatch.cli.common import (
    EXIT_USAGE,
    ConfigOption,
    DatabaseOption,
    err,
    load_config,
    run_async,
)
from ciwatch.config import Settings, split_listen
from ciwatch.errors import CiwatchError, ConfigError
from ciwatch.runtime import Runtime

log = logging.getLogger("ciwatch.serve")

ListenOption = Annotated[
    str | None,
    typer.Option(
        "--listen",
        metavar="HOST:PORT",
        help="Address to listen on [default: server.listen].",
        show_default=False,
    ),
]
DEMO_LISTEN = "127.0.0.1:8080"
DEMO_STATS_MAX_AGE = 5.0


class _Server(uvicorn.Server):
    """uvicorn, with signals routed to our stop event instead of re-raised after shutdown (which
    would kill the process before the scheduler has drained)."""

    def __init__(self, config: uvicorn.Config, stop: asyncio.Event) -> None:
        super().__init__(config)
        self.stop = stop

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, self._signalled, sig)
        try:
            yield
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    def _signalled(self, sig: int) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True
        self.stop.set()


async def serve_settings(
    settings: Settings,
    *,
    on_ready: Callable[[str], None] | None = None,
    stats_max_age: float | None = None,
) -> None:
    """Run the scheduler and the web app until a signal arrives. `stats_max_age` replaces the
    dashboard's five minutes of caching of past days' figures (`store.stats.StatsCache`)."""
    from ciwatch.store.stats import StatsCache
    from ciwatch.web.app import create_app

    host, port = split_listen(settings.server.listen)
    # Bound before anything else starts: a busy or forbidden address is one clear error.
    sock = bind_listen(settings.server.listen, host, port)
    try:
        runtime = await Runtime.open(settings)
    except BaseException:
        sock.close()
        raise
    try:
        app = create_app(runtime)
        if stats_max_age is not None:
            app.state.dashboard_cache = StatsCache(max_age=stats_max_age)
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=10,
        )
        stop = asyncio.Event()
        server = _Server(config, stop)
        polling = asyncio.create_task(run_collection(runtime, stop), name="collection")
        alerting = asyncio.create_task(run_alerting(runtime, stop), name="alerting")
        serving = asyncio.create_task(server.serve(sockets=[sock]), name="web")
        # uvicorn exposes `started` as a flag, not an event.
        while not server.started and not serving.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if serving.done():
            stop.set()
            await asyncio.gather(polling, alerting)
            with contextlib.suppress(SystemExit, OSError):
                serving.result()  # uvicorn has logged why (address in use, not permitted)
            raise CiwatchError(f"cannot listen on {settings.server.listen}")
        if on_ready is not None:
            on_ready(f"http://{_display_host(host)}:{_bound_port(server, port)}/")
        await serving
        stop.set()
        await asyncio.gather(polling, alerting)
    finally:
        sock.close()
        await runtime.close()


def bind_listen(listen: str, host: str, port: int) -> socket.socket:
    """A listening socket on `host:port` (IPv4 or IPv6, as the host resolves); ConfigError
    naming the address when it is in use, not permitted or not local (exit 2, one line)."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"server.listen: cannot listen on {listen}: {_reason(exc)}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"server.listen: cannot listen on {listen}: {_reason(exc)}") from None
    return sock


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


async def run_collection(runtime: Runtime, stop: asyncio.Event) -> None:
    """The scheduler and the store's write probe (`/readyz`), each supervised (restarted with
    backoff if it dies, and reported down meanwhile), until `stop`."""
    from ciwatch.health import probe_loop

    supervisor = runtime.supervisor
    tasks = [
        supervisor.start(
            "store-probe",
            lambda stopped: probe_loop(
                runtime.store, runtime.store_health, runtime.clock, runtime.instance, stopped
            ),
            stop,
        )
    ]
    if runtime.scheduler is not None:
        tasks.append(supervisor.start("scheduler", runtime.scheduler.run, stop))
    await asyncio.gather(*tasks)


async def run_alerting(runtime: Runtime, stop: asyncio.Event) -> None:
    """The runtime's alert engine (it evaluates a project/ref as soon as this process changes
    it, and its ticker re-evaluates every project/ref, so time-based rules fire without new
    runs), the store's own alarm and one delivery worker per configured channel, each
    supervised, until `stop`. Queuing a notification wakes the channel's worker; the channels
    close with the runtime."""
    from ciwatch.health import PROBE_INTERVAL

    alerting = runtime.alerting
    supervisor = runtime.supervisor

    async def watch_store(stopped: asyncio.Event) -> None:
        """The store's own unhealthy alert, straight to the channels (alerting/health.py)."""
        health = runtime.store_health
        while not stopped.is_set():
            await alerting.alarm.check(
                runtime.clock.now(),
                writable=health.writable,
                error=health.error,
                since=health.unwritable_since,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopped.wait(), timeout=PROBE_INTERVAL)

    tasks = [supervisor.start("alert-engine", alerting.engine.run, stop)]
    tasks.append(supervisor.start("store-alarm", watch_store, stop))
    for name in alerting.channels:
        loop = partial(alerting.workers.channel_loop, name)
        tasks.append(supervisor.start(f"delivery:{name}", loop, stop))
    await asyncio.gather(*tasks)


def _display_host(host: str) -> str:
    if host in ("0.0.0.0", ""):  # noqa: S104 - only used to print a URL
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _bound_port(server: uvicorn.Server, wanted: int) -> int:
    for srv in server.servers:
        for sock in srv.sockets or ():
            return int(sock.getsockname()[1])
    return wanted


def _run(settings: Settings, banner: Callable[[str], None]) -> None:
    try:
        split_listen(settings.server.listen)
    except ValueError as exc:
        err.print(f"--listen: {exc}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    run_async(lambda: serve_settings(settings, on_ready=banner))


def serve(
    config: ConfigOption = None,
    database: DatabaseOption = None,
    listen: ListenOption = None,
) -> None:
    """Run everything in one process: collection, the dashboard, the JSON API and /metrics."""
    settings = load_config(config, database)
    if listen:
        settings = settings.model_copy(
            update={"server": settings.server.model_copy(update={"listen": listen})}
        )

    def banner(url: str) -> None:
        sys.stdout.write(
            f"ciwatch serving {url} ({len(settings.sources)} sources; /api/v1/projects, /metrics)\n"
        )
        sys.stdout.flush()

    _run(settings, banner)


def demo(listen: ListenOption = None) -> None:
    """Serve the dashboard against the built-in CI simulator: ten projects on GitLab, GitHub and
    Jenkins whose runs keep arriving, SQLite in a temporary directory, no configuration or
    credentials needed."""
    address = listen or DEMO_LISTEN
    with tempfile.TemporaryDirectory(prefix="ciwatch-demo-") as tmp:
        run_async(lambda: _demo(address, Path(tmp)))


async def _demo(listen: str, tmp: Path) -> None:
    from ciwatch.simulator import Simulator, demo_scenario, start_simulator

    sim = Simulator(demo_scenario())
    running = await start_simulator(sim, "127.0.0.1", 0)
    try:
        settings = demo_settings(running.url, tmp, listen)

        def banner(url: str) -> None:
            sys.stdout.write(
                f"ciwatch demo: open {url}\n"
                f"  JSON API  {url}api/v1/projects\n"
                f"  metrics   {url}metrics\n"
                f"  simulated GitLab, GitHub and Jenkins at {running.url}\n"
                f"  data in {tmp} (deleted on exit); Ctrl-C to stop\n"
            )
            sys.stdout.flush()

        # The first polls backfill two weeks of history within seconds of the start: past
        # days' figures cached for the usual five minutes would keep the charts of a page
        # opened meanwhile empty. The demo's few hundred runs are cheap to re-read.
        await serve_settings(settings, on_ready=banner, stats_max_age=DEMO_STATS_MAX_AGE)
    finally:
        await running.stop()


def demo_settings(simulator_url: str, tmp: Path, listen: str) -> Settings:
    """Sources pointing at the simulator's demo scenario, polled briskly so it looks alive."""
    from ciwatch.simulator.azure import DEFAULT_AZURE_TOKEN

    # `backfill` covers the scenario's two weeks of history (simulator.builtin.history): the
    # first poll of each target collects it, so the charts are full from the start.
    common: dict[str, Any] = {
        "interval": "10s",
        "active_interval": "5s",
        "requests_per_second": 1000,
        "backfill": 200,
    }
    # The simulator serves test reports: the demo's project pages show failing tests.
    common["tests"] = True
    return Settings(
        database=f"sqlite:///{tmp / 'ciwatch.db'}",
        server={"listen": listen},
        collection={"discovery_interval": "1m"},
        sources=[
            {
                "name": "gitlab",
                "type": "gitlab",
                "url": f"{simulator_url}/gitlab",
                "token": "glpat-simulator",
                "groups": ["platform"],
                **common,
            },
            {
                "name": "github",
                "type": "github",
                "url": f"{simulator_url}/github",
                "token": "ghp_simulator",
                "orgs": ["octo-org"],
                **common,
            },
            {
                "name": "jenkins",
                "type": "jenkins",
                "url": f"{simulator_url}/jenkins",
                "username": "admin",
                "token": "simulator-api-token",
                "folders": ["backend", "tools"],
                **common,
            },
            {
                "name": "azure",
                "type": "azure",
                "url": f"{simulator_url}/azure",
                "organization": "fabrikam",
                "projects": ["Fabrikam"],
                "token": DEFAULT_AZURE_TOKEN,
                **common,
            },
        ],
    )
