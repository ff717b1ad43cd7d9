"""What the cluster benchmarks (create, trigger, failover) share: free loopback ports, a real
tock cluster in a temp dir or the nodes of an existing one (`--target`), a closed-loop HTTP load
driver with a progress line, a recording trigger sink, and percentile summaries.

Everything runs on 127.0.0.1. The driver and the sink live in the benchmark's own event loop,
so on a small machine they compete for CPU with the nodes: each case reports the driver's own
CPU use next to its figures, which says whether the client or the server was the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cluster.local import LocalCluster, LocalClusterConfig  # noqa: E402

# Below Linux's ephemeral range (32768-60999 by default): a port in it can be taken by any
# process's outgoing connection while a killed node is down, and the node could not bind it again.
PORT_RANGE = (10000, 20000)
PORT_SEARCH_TRIES_MAX = 200
LOG_TAIL_LINES = 30
HTTP_TIMEOUT_S = 30.0
# Keep-alive connections per node (per base URL) for a driver; above the in-flight count it
# would never be the limit.
CONNECTIONS_PER_HOST_MAX = 256
SINK_POLL_S = 0.05
PROGRESS_S = 1.0
PROGRESS_WIDTH = 30


# -- ports and clusters ----------------------------------------------------------------------


def free_port_block(size: int) -> int:
    """The first of `size` consecutive ports that are free on 127.0.0.1 right now."""
    for _ in range(PORT_SEARCH_TRIES_MAX):
        base = random.randrange(PORT_RANGE[0], PORT_RANGE[1] - size)
        if all(_port_free(port) for port in range(base, base + size)):
            return base
    raise RuntimeError(f"no {size} consecutive free ports found on 127.0.0.1")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextmanager
def tock_cluster(nodes: int = 3, ready_timeout_s: float = 60.0) -> Iterator[LocalCluster]:
    """A ready tock cluster of `nodes` processes (default settings, durable) on free ports in
    a temp data dir; always stopped, with each node's log tail printed if the body fails."""
    base = free_port_block(3 * nodes)
    with tempfile.TemporaryDirectory(prefix="bench-tock-") as data_dir:
        cluster = LocalCluster(
            LocalClusterConfig(
                nodes=nodes,
                data_dir=Path(data_dir),
                http_port=base,
                raft_port=base + nodes,
                grpc_port=base + 2 * nodes,
                time_zone="UTC",
            )
        )
        cluster.start()
        try:
            cluster.wait_ready(ready_timeout_s)
            yield cluster
        except BaseException:
            print_log_tails(cluster.nodes)
            raise
        finally:
            cluster.stop()


@dataclass(frozen=True)
class Endpoints:
    """Where a benchmark's load goes: the nodes' base URLs, and the app whose jobs it creates
    with the headers its calls carry (its id, and its token in token mode)."""

    urls: list[str]
    app: str
    app_headers: dict[str, str]
    # The local nodes' process ids (whose CPU a run can count); none for --target.
    pids: tuple[int, ...] = ()


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """--target and the tokens: measure an existing cluster instead of a local one."""
    parser.add_argument(
        "--target",
        action="append",
        metavar="URL",
        help="a node of an existing cluster (repeat for each node); "
        "without it a local 3-node cluster is started and stopped",
    )
    parser.add_argument("--app", default="default", help="the app the jobs belong to")
    parser.add_argument("--token", help="with --target: the app's token (dapr-api-token)")


@contextmanager
def endpoints(args: argparse.Namespace) -> Iterator[Endpoints]:
    """The --target nodes, or a local cluster started for the run (and always stopped)."""
    app = {"dapr-app-id": args.app}
    if args.target:
        if args.token is not None:
            app["dapr-api-token"] = args.token
        yield Endpoints([url.rstrip("/") for url in args.target], args.app, app)
        return
    with tock_cluster() as cluster:
        pids = tuple(node.pid for node in cluster.nodes if node.pid is not None)
        yield Endpoints([node.url for node in cluster.nodes], args.app, app, pids)


def print_log_tails(nodes: Iterable[Any]) -> None:
    """The last lines of each node's log (anything with `node_id` and `log_file`)."""
    for node in nodes:
        if node.log_file.exists():
            tail = node.log_file.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            print(f"---- {node.node_id} log (last {LOG_TAIL_LINES} lines) ----", *tail, sep="\n")


# -- time ------------------------------------------------------------------------------------


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def rfc3339(ms: int) -> str:
    """An RFC3339 UTC time with milliseconds, as a job's dueTime."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def rfc3339_ms(text: str) -> int:
    """Milliseconds since the epoch of an RFC3339 time such as 2026-01-02T03:04:05.678Z."""
    return round(datetime.fromisoformat(text).timestamp() * 1000)


# -- statistics ------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q <= 100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def spread(values: list[float], digits: int = 1) -> dict[str, float]:
    """min, p50, p99 and max of a non-empty list, rounded."""
    return {
        "min": round(min(values), digits),
        "p50": round(percentile(values, 50), digits),
        "p99": round(percentile(values, 99), digits),
        "max": round(max(values), digits),
    }


# -- closed-loop load --------------------------------------------------------------------------

Send = Callable[[aiohttp.ClientSession, int, int], Awaitable[None]]


@dataclass
class Load:
    """What a closed-loop run did: successes, their latencies, failures by kind, and time."""

    latencies_s: list[float] = field(default_factory=list)
    completed_s: list[float] = field(default_factory=list)  # since the run started
    errors: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    driver_cpu_s: float = 0.0
    # The CPU the servers under load used meanwhile (every process summed), when it is known.
    server_cpu_s: float | None = None

    @property
    def done(self) -> int:
        return len(self.latencies_s)

    def figures(self) -> dict[str, object]:
        latencies_ms = [s * 1000 for s in self.latencies_s] or [0.0]
        return {
            "requests_per_s": round(self.done / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "done": self.done,
            "errors": dict(self.errors),
            "latency_ms_p50": round(percentile(latencies_ms, 50), 2),
            "latency_ms_p99": round(percentile(latencies_ms, 99), 2),
            "seconds": round(self.elapsed_s, 2),
            "driver_cpu_pct": round(100 * self.driver_cpu_s / self.elapsed_s, 1)
            if self.elapsed_s
            else 0.0,
            # Summed over the servers' processes (200 is two cores' worth), and per request: what
            # one request costs the whole cluster, the figure that bounds throughput on a machine.
            "server_cpu_pct": None
            if self.server_cpu_s is None or not self.elapsed_s
            else round(100 * self.server_cpu_s / self.elapsed_s, 1),
            "server_cpu_us_per_request": None
            if self.server_cpu_s is None or not self.done
            else round(1e6 * self.server_cpu_s / self.done),
        }


async def closed_loop(
    send: Send,
    items: Iterable[int],
    in_flight: int,
    seconds: float | None = None,
    server_pids: tuple[int, ...] = (),
) -> Load:
    """Keep `in_flight` requests outstanding until `items` runs out or `seconds` pass.

    Worker w calls `send(session, w, item)` for the next item as soon as its last one answered;
    an exception counts as a failed request (by type) and the worker goes on. One keep-alive
    session serves every worker. With `server_pids`, the CPU those processes used meanwhile is
    counted too.
    """
    load = Load()
    work = iter(items)
    deadline = None if seconds is None else time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=CONNECTIONS_PER_HOST_MAX)
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)

    async def worker(session: aiohttp.ClientSession, w: int) -> None:
        for item in work:
            started = time.monotonic()
            if deadline is not None and started >= deadline:
                return
            try:
                await send(session, w, item)
            except (aiohttp.ClientError, TimeoutError, RequestError) as error:
                load.errors[type(error).__name__] += 1
            else:
                done = time.monotonic()
                load.latencies_s.append(done - started)
                load.completed_s.append(done - run_started)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        cpu_started, run_started = time.process_time(), time.monotonic()
        server_cpu_started = cpu_seconds(server_pids)
        async with progress(load, seconds):
            await asyncio.gather(*(worker(session, w) for w in range(in_flight)))
        load.elapsed_s = time.monotonic() - run_started
        load.driver_cpu_s = time.process_time() - cpu_started
        server_cpu_ended = cpu_seconds(server_pids)
        if server_cpu_started is not None and server_cpu_ended is not None:
            load.server_cpu_s = server_cpu_ended - server_cpu_started
    return load


def cpu_seconds(pids: tuple[int, ...]) -> float | None:
    """The CPU time (user + system) the processes have used so far, summed; None with no pids,
    or where /proc cannot say (another OS, a process gone)."""
    if not pids:
        return None
    ticks = 0
    for pid in pids:
        try:
            # The fields after the command name, which ends with the last ")": utime, stime.
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            return None
    return ticks / os.sysconf("SC_CLK_TCK")


@asynccontextmanager
async def progress(load: Load, seconds: float | None) -> AsyncIterator[None]:
    """A progress line on a terminal's stderr, redrawn each second while the load runs."""
    if not sys.stderr.isatty():
        yield
        return
    started = time.monotonic()

    async def draw() -> None:
        while True:
            await asyncio.sleep(PROGRESS_S)
            elapsed = time.monotonic() - started
            if seconds:
                filled = min(PROGRESS_WIDTH, int(PROGRESS_WIDTH * elapsed / seconds))
                bar = f"[{'#' * filled}{'.' * (PROGRESS_WIDTH - filled)}] "
            else:
                bar = ""
            rate = load.done / elapsed if elapsed else 0.0
            print(
                f"\r  {bar}{elapsed:5.1f} s  {load.done:,} done  {rate:,.0f}/s",
                end="",
                file=sys.stderr,
                flush=True,
            )

    task = asyncio.create_task(draw())
    try:
        yield
    finally:
        task.cancel()
        print("\r\033[K", end="", file=sys.stderr, flush=True)


class RequestError(Exception):
    """An HTTP answer other than the expected one, during a benchmark's load."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"{status}: {body[:200]!r}")
        self.status = status


async def post_expecting(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    status: int,
    headers: dict[str, str] | None = None,
) -> None:
    """POST a JSON body; anything but `status` raises RequestError."""
    all_headers = {"content-type": "application/json", **(headers or {})}
    async with session.post(url, data=body, headers=all_headers) as response:
        answer = await response.read()
        if response.status != status:
            raise RequestError(response.status, answer)


# -- trigger sink ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    """One trigger as the app received it."""

    name: str
    received_ms: float
    scheduled_ms: int
    trigger_id: str
    # The attempt's number and the node that sent it: a second copy of an id with a higher
    # attempt is a retry (an answer that came too late), one with the same is a fire again.
    attempt: int = 1
    node: str = ""


@dataclass
class TriggerSink:
    """An app on 127.0.0.1 that answers 200 to every trigger and records it with its receive
    time (taken first thing in the handler); runs in the caller's event loop."""

    receipts: list[Receipt] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/job/{name}", self._on_job)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, count: int, timeout_s: float) -> bool:
        """Wait until at least `count` triggers arrived in all (polled: a check per arrival
        would cost the sink time that shows up as lateness)."""
        deadline = time.monotonic() + timeout_s
        while len(self.receipts) < count:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(SINK_POLL_S)
        return True

    async def _on_job(self, request: web.Request) -> web.Response:
        received_ms = time.time_ns() / 1_000_000
        headers = request.headers
        self.receipts.append(
            Receipt(
                request.match_info["name"],
                received_ms,
                rfc3339_ms(headers["tock-scheduled-time"]),
                headers.get("tock-trigger-id", ""),
                int(headers.get("tock-attempt", "1")),
                headers.get("tock-node", ""),
            )
        )
        await request.read()
        return web.Response(status=200)


@asynccontextmanager
async def running_sink(host: str = "127.0.0.1") -> AsyncIterator[TriggerSink]:
    sink = TriggerSink(host=host)
    await sink.start()
    try:
        yield sink
    finally:
        await sink.stop()


async def get_json(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> Any:
    async with session.get(url, headers=headers) as response:
        response.raise_for_status()
        return await response.json()


async def register_app(
    session: aiohttp.ClientSession,
    node_url: str,
    app_url: str,
    app: str = "default",
    headers: dict[str, str] | None = None,
) -> None:
    """Send the app's triggers to `app_url`."""
    url = f"{node_url}/v1.0/apps/{app}"
    async with session.put(url, json={"url": app_url}, headers=headers) as response:
        if response.status != 204:
            raise RequestError(response.status, await response.read())
