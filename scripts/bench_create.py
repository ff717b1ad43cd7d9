"""Create throughput over HTTP, durable: a 3-node tock cluster against a 3-member etcd cluster,
driven by the same client in the same run (the target: at least 2x etcd).

    scripts/bench create [--seconds 10] [--warmup 2] [--in-flight 64] [--body-bytes 200]
                         [--no-etcd] [--target URL ... [--token TOKEN]]

The driver (aiohttp, keep-alive) keeps `in-flight` requests outstanding, spread round-robin
over the 3 nodes (members), for `warmup` seconds not counted and then `seconds` counted. tock
gets `POST /v1.0/jobs/{name}` with a one-shot job due in an hour whose JSON body is
`body-bytes` long (answer 204 once committed by a majority, fsynced); etcd gets the same number
of value bytes through its HTTP gateway, `POST /v3/kv/put` (base64 key and value), with its
default durable settings (each member fsyncs its WAL). etcd is Debian's `etcd-server`, which
scripts/install-etcd installs when `etcd` is not on PATH; if that fails, the etcd half is
reported as skipped and the tock half still runs.

With `--target` (once per node) the tock half measures that existing cluster instead of a local
one, sending `--token` as the app token; the jobs it creates are named `bench-...` and due in an
hour, so delete them afterwards (`DELETE /v1.0/jobs?prefix=bench-`) if the cluster is not a
throwaway one.

Figures per system: creates (puts)/s, latency p50/p99 in ms, errors, the driver's own CPU use
(near 100% means the client, not the server, was the limit), and for servers started here the
CPU their processes used over the counted run, summed (200% is two cores' worth) and per request
(what one create costs the whole cluster: with the driver's share, it bounds the rate a machine
can reach); then the ratio tock/etcd. The report plots tock's creates per second over the run
and its latency histogram.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from bench_report import Series
from bench_support import (
    ROOT,
    Endpoints,
    Load,
    RequestError,
    add_target_arguments,
    closed_loop,
    endpoints,
    free_port_block,
    post_expecting,
    print_log_tails,
)

JOB_DUE_TIME = "1h"
ETCD_INSTALLER = ROOT / "scripts" / "install-etcd"
ETCD_MEMBERS = 3
ETCD_READY_TIMEOUT_S = 30.0
ETCD_STOP_TIMEOUT_S = 10.0
# The v3 JSON gateway moved from /v3beta (3.3) to /v3 (3.4+); the installed version decides.
ETCD_GATEWAY_PATHS = ("/v3/kv/put", "/v3beta/kv/put")


@dataclass(frozen=True)
class Target:
    """One system under load: its members' base URLs and, for a member URL and item number,
    the request URL, body and expected status."""

    urls: list[str]
    request: Callable[[str, int], tuple[str, bytes, int]]
    headers: dict[str, str] = field(default_factory=dict)
    # The servers' process ids, when they run here: their CPU is counted over the run.
    pids: tuple[int, ...] = ()


def job_body(body_bytes: int) -> bytes:
    """A one-shot job create body padded to exactly `body_bytes` (at least the bare job)."""
    bare = json.dumps({"dueTime": JOB_DUE_TIME, "data": {"pad": ""}})
    pad = "x" * max(0, body_bytes - len(bare))
    return json.dumps({"dueTime": JOB_DUE_TIME, "data": {"pad": pad}}).encode()


@dataclass
class EtcdMember:
    node_id: str
    client_port: int
    peer_port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir.with_suffix(".log")

    def command(self, initial_cluster: str) -> list[str]:
        return [
            "etcd",
            f"--name={self.node_id}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={initial_cluster}",
            "--initial-cluster-token=bench",
            "--initial-cluster-state=new",
        ]


@contextmanager
def etcd_cluster() -> Iterator[list[EtcdMember]]:
    """A healthy 3-member etcd cluster on free loopback ports in a temp dir, with etcd's
    default (durable) settings; yields the running members; always stopped."""
    base = free_port_block(2 * ETCD_MEMBERS)
    with tempfile.TemporaryDirectory(prefix="bench-etcd-") as root:
        members = [
            EtcdMember(f"e{k}", base + k, base + ETCD_MEMBERS + k, Path(root) / f"e{k}")
            for k in range(ETCD_MEMBERS)
        ]
        initial = ",".join(f"{m.node_id}={m.peer_url}" for m in members)
        try:
            for member in members:
                with member.log_file.open("wb") as log:
                    member.process = subprocess.Popen(
                        member.command(initial),
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
            wait_etcd_healthy(members)
            yield members
        except BaseException:
            print_log_tails(members)
            raise
        finally:
            stop_etcd(members)


def wait_etcd_healthy(members: list[EtcdMember]) -> None:
    deadline = time.monotonic() + ETCD_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if all(etcd_healthy(m) for m in members):
            return
        time.sleep(0.2)
    raise TimeoutError(f"etcd not healthy within {ETCD_READY_TIMEOUT_S} s")


def etcd_healthy(member: EtcdMember) -> bool:
    if member.process is None or member.process.poll() is not None:
        raise RuntimeError(f"etcd {member.node_id} exited; see {member.log_file}")
    try:
        with urllib.request.urlopen(f"{member.url}/health", timeout=2) as reply:
            return bool(json.loads(reply.read()).get("health") == "true")
    except (OSError, ValueError):
        return False


def stop_etcd(members: list[EtcdMember]) -> None:
    for member in members:
        if member.process is not None and member.process.poll() is None:
            member.process.terminate()
    for member in members:
        if member.process is None:
            continue
        try:
            member.process.wait(ETCD_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            member.process.kill()
            member.process.wait(5)


def put_body(key: bytes, value: bytes) -> bytes:
    """The gateway's JSON for a put: key and value base64-encoded."""
    encoded = {"key": base64.b64encode(key).decode(), "value": base64.b64encode(value).decode()}
    return json.dumps(encoded).encode()


async def gateway_put_url(member_url: str) -> str:
    """The put path this etcd's JSON gateway serves (tried with a real put)."""
    async with aiohttp.ClientSession() as session:
        for path in ETCD_GATEWAY_PATHS:
            try:
                await post_expecting(session, member_url + path, put_body(b"probe", b"x"), 200)
            except RequestError as error:
                if error.status == 404:
                    continue
                raise
            return path
    raise RuntimeError(f"etcd at {member_url} serves none of {ETCD_GATEWAY_PATHS}")


def tock_target(nodes: Endpoints, body_bytes: int) -> Target:
    body = job_body(body_bytes)
    return Target(
        nodes.urls,
        lambda url, i: (f"{url}/v1.0/jobs/bench-{i:09d}", body, 204),
        nodes.app_headers,
        nodes.pids,
    )


def etcd_target(members: list[EtcdMember], put_url: str, value_bytes: int) -> Target:
    value = b"x" * value_bytes
    return Target(
        [member.url for member in members],
        lambda url, i: (url + put_url, put_body(f"bench/{i:09d}".encode(), value), 200),
        pids=tuple(m.process.pid for m in members if m.process is not None),
    )


async def drive(target: Target, in_flight: int, warmup_s: float, seconds: float) -> Load:
    """Warm up (not counted), then the counted run; item numbers never repeat."""
    items = itertools.count()

    async def send(session: aiohttp.ClientSession, worker: int, item: int) -> None:
        url, body, status = target.request(target.urls[worker % len(target.urls)], item)
        await post_expecting(session, url, body, status, target.headers)

    if warmup_s > 0:
        await closed_loop(send, items, in_flight, warmup_s)
    return await closed_loop(send, items, in_flight, seconds, target.pids)


def run_tock(args: argparse.Namespace) -> Load:
    with endpoints(args) as nodes:
        target = tock_target(nodes, args.body_bytes)
        return asyncio.run(drive(target, args.in_flight, args.warmup, args.seconds))


def run_etcd(args: argparse.Namespace) -> dict[str, object]:
    if shutil.which("etcd") is None:
        installed = subprocess.run([str(ETCD_INSTALLER)], check=False)
        if installed.returncode != 0 or shutil.which("etcd") is None:
            return {"skipped": f"etcd could not be installed ({ETCD_INSTALLER} failed)"}
    try:
        with etcd_cluster() as members:
            put_url = asyncio.run(gateway_put_url(members[0].url))
            target = etcd_target(members, put_url, args.body_bytes)
            load = asyncio.run(drive(target, args.in_flight, args.warmup, args.seconds))
    except (OSError, RuntimeError, TimeoutError) as error:
        # The tock half is measured already: keep it, and say why etcd has no figures.
        return {"skipped": f"etcd failed: {error}"}
    return {**load.figures(), "gateway": put_url}


def print_table(rows: dict[str, dict[str, object]]) -> None:
    """One line per system; `srv cpu%` is its processes' CPU summed (200 = two cores), `srv
    us/req` that CPU per request ("-" where the servers are not local)."""
    print(
        f"{'system':>6} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'drv cpu%':>8} "
        f"{'srv cpu%':>8} {'srv us/req':>10}"
    )
    for name, row in rows.items():
        if "skipped" in row:
            print(f"{name:>6} skipped: {row['skipped']}")
            continue
        errors = row["errors"]
        assert isinstance(errors, dict)
        server_pct, server_us = row.get("server_cpu_pct"), row.get("server_cpu_us_per_request")
        print(
            f"{name:>6} {row['requests_per_s']:>9} {row['latency_ms_p50']:>8} "
            f"{row['latency_ms_p99']:>8} {sum(errors.values()):>7} {row['driver_cpu_pct']:>8} "
            f"{server_pct if server_pct is not None else '-':>8} "
            f"{server_us if server_us is not None else '-':>10}"
        )


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    """The create load's shape (also `scripts/bench compare`'s)."""
    parser.add_argument("--seconds", type=float, default=10.0, help="counted run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="uncounted warm-up (default 2)")
    parser.add_argument("--in-flight", type=int, default=64, help="concurrent requests")
    parser.add_argument("--body-bytes", type=int, default=200, help="job body / etcd value size")


def main(argv: list[str]) -> dict[str, object]:
    parser = argparse.ArgumentParser(
        prog="scripts/bench create",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_load_arguments(parser)
    parser.add_argument("--no-etcd", action="store_true", help="run the tock half only")
    add_target_arguments(parser)
    args = parser.parse_args(argv)
    tock = run_tock(args)
    rows = {"tock": tock.figures()}
    rows["etcd"] = {"skipped": "--no-etcd"} if args.no_etcd else run_etcd(args)
    print_table(rows)
    figures: dict[str, object] = {
        "seconds": args.seconds,
        "in_flight": args.in_flight,
        "body_bytes": args.body_bytes,
        **rows,
    }
    tock_rate, etcd_rate = rows["tock"].get("requests_per_s"), rows["etcd"].get("requests_per_s")
    if isinstance(tock_rate, float) and isinstance(etcd_rate, float) and etcd_rate > 0:
        figures["ratio_tock_over_etcd"] = round(tock_rate / etcd_rate, 2)
        print(f"tock / etcd = {figures['ratio_tock_over_etcd']} (target: >= 2)")
    figures["series"] = {
        "throughput": Series("rate", "tock creates per second", "creates", tock.completed_s),
        "latency": Series(
            "histogram", "tock create latency", "ms", [s * 1000 for s in tock.latencies_s]
        ),
    }
    return figures
