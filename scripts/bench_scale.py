"""Scale: N jobs in one 3-node cluster: create rate, memory per node, snapshot time, Raft files,
and restart-to-ready after a crash and after a clean stop.

    scripts/bench scale [--jobs 100000] [--in-flight 64] [--ready-timeout 600]
                        [--schedule "@every 24h"]

A durable 3-node cluster starts in a temp dir. The driver creates `jobs` jobs with
`POST /v1.0/jobs/{name}`, `in-flight` requests outstanding spread round-robin over the nodes;
every job is `@every 24h` (first fire a day after its create), so nothing fires during the run.
Such jobs are beyond the owners' timer horizon (an hour, node/engine/horizon.py): they hold no
timer. `--schedule "@every 30m"` measures the other case, every job holding a timer on its owner
(the run must end before the first fires).
Bodies carry `overwrite: true`, so a create that failed (and may have committed) is simply
sent again in a retry pass.

Figures:
- create rate (first pass), latency p50/p99, errors (by HTTP status), the driver's CPU use;
  the membership epochs and Raft terms that began meanwhile (every node is up: both spurious),
  and how many early campaigns a closed connection to the leader began (store/raft/transport.py);
- per node, RSS (VmRSS of the node process) with 0 jobs, with N, and after each restart, and
  the resident bytes one job costs (RSS growth from 0 to N, divided by N); the
  sizes of its Raft journal and dump once every node holds N;
- snapshots: a node snapshots in a forked child (store/raft/dump.py) when its log passes
  log_compaction_entries_min entries. There is no admin route to force one, so the run watches
  each node's children: a child's lifetime is one snapshot (fork, encode, write, fsync,
  rename), reported with the number of jobs created when it started;
- restart-to-ready, three times: every node SIGKILLed, every node stopped cleanly
  (LocalCluster.stop: quiesce, SIGTERM), then one node SIGKILLed while the others serve (the
  usual restart: the other two are idle, so it has about a core to itself). For each start:
  seconds until each node answers HTTP at all (process start and imports: pysyncobj loads the
  dump and replays the journal later, on its tick thread), until its `GET /v1.0/healthz/ready`
  is 204 (dump loaded, journal replayed, caught up with a leader; a restarted node campaigns
  only once a majority of the cluster knows no leader, within the normal election timeout then,
  see store/raft/transport.py "Quiet start"), and until the cluster is ready
  (LocalCluster.wait_ready: one leader, every node live in the epoch); then the job count on
  every node (`GET /admin/cluster` "jobs") must be N.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import aiohttp
from bench_support import Load, RequestError, closed_loop, post_expecting, tock_cluster

from cluster.local import LocalCluster, NodeProcess

JOB_SCHEDULE = "@every 24h"
RETRY_PASSES_MAX = 3
POLL_S = 0.05
PROBE_TIMEOUT_S = 2.0
# Lets the nodes' allocators and last batches settle before memory is read.
SETTLE_S = 2.0


# -- what a node process looks like from outside -----------------------------------------------


def rss_mib(pid: int | None) -> float:
    """The resident memory of a process (VmRSS), in MiB; 0 for no process."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def children(pid: int) -> set[int]:
    """The processes `pid` forked and that still run (any of its threads may have forked)."""
    found: set[int] = set()
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as listing:
                found.update(int(child) for child in listing.read().split())
    except (FileNotFoundError, ProcessLookupError):
        pass  # The node or one of its threads ended between the listing and the read.
    return found


def raft_files(node: NodeProcess) -> dict[str, int]:
    """Size in bytes of every file in the node's Raft directory (journal, dump, ...)."""
    raft_dir = node.data_dir / "raft"
    return {path.name: path.stat().st_size for path in sorted(raft_dir.iterdir())}


def ram_bytes_per_job(figures: dict[str, object], jobs: int) -> dict[str, int]:
    """What one job costs each node in resident memory: its RSS growth from 0 to N jobs, per
    job (the state, its indexes and the timing wheel together, not only the encoded bytes)."""
    empty, full = _dict(figures["rss_mib_empty"]), _dict(figures["rss_mib_full"])
    return {
        node_id: round((_float(full[node_id]) - _float(rss)) * 2**20 / max(jobs, 1))
        for node_id, rss in empty.items()
    }


def memory(cluster: LocalCluster) -> dict[str, float]:
    return {node.node_id: rss_mib(node.pid) for node in cluster.nodes}


def epoch_and_term(cluster: LocalCluster) -> tuple[int, int]:
    """The cluster's membership epoch and Raft term, as the first node reports them."""
    status = cluster.cluster_status(cluster.nodes[0].node_id)
    epoch, term = status["epoch"], status["term"]
    assert isinstance(epoch, int) and isinstance(term, int)
    return epoch, term


def early_campaigns(cluster: LocalCluster) -> int:
    """Early campaigns (a follower saw its connection to the leader close), summed over the
    nodes, from their metrics."""
    total = 0.0
    for node in cluster.nodes:
        for line in cluster.metrics(node.node_id).splitlines():
            if line.startswith("tock_raft_leader_lost_campaigns_total "):
                total += float(line.split()[1])
    return int(total)


def jobs_everywhere(cluster: LocalCluster) -> dict[str, int]:
    """The job count each node reports in `GET /admin/cluster`."""
    counts: dict[str, int] = {}
    for node in cluster.nodes:
        jobs = cluster.cluster_status(node.node_id)["jobs"]
        assert isinstance(jobs, int)
        counts[node.node_id] = jobs
    return counts


# -- snapshots, seen as the dump children the nodes fork -------------------------------------


@dataclass(frozen=True)
class Snapshot:
    node: str
    seconds: float
    jobs_created_at_start: int


@dataclass
class Progress:
    """Jobs acknowledged so far; read by the snapshot watcher's thread."""

    created: int = 0


@dataclass
class SnapshotWatch:
    """A thread that polls each node's children: every child is a snapshot in progress."""

    nodes: list[NodeProcess]
    jobs_created: Callable[[], int]
    done: list[Snapshot] = field(default_factory=list)
    _running: dict[tuple[str, int], tuple[float, int]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="snapshot-watch", daemon=True)
        self._thread.start()

    def stop(self, idle_timeout_s: float) -> None:
        """Wait up to `idle_timeout_s` for the snapshots in progress to end, then stop."""
        deadline = time.monotonic() + idle_timeout_s
        while self._running and time.monotonic() < deadline:
            time.sleep(POLL_S)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(POLL_S):
            for node in self.nodes:
                if node.pid is not None:
                    self._see(node.node_id, children(node.pid))

    def _see(self, node_id: str, live: set[int]) -> None:
        now = time.monotonic()
        for child in live:
            self._running.setdefault((node_id, child), (now, self.jobs_created()))
        for key, (started, jobs) in list(self._running.items()):
            if key[0] == node_id and key[1] not in live:
                del self._running[key]
                self.done.append(Snapshot(node_id, round(now - started, 2), jobs))


# -- creating the jobs -------------------------------------------------------------------------


def job_body(schedule: str) -> bytes:
    body = {"schedule": schedule, "data": {"bench": "scale"}, "overwrite": True}
    return json.dumps(body).encode()


async def create_jobs(
    urls: list[str], jobs: int, in_flight: int, schedule: str, progress: Progress
) -> Load:
    """Create jobs scale-0000000.. over every node; the first pass's Load, after retrying the
    failed creates (idempotent: the body overwrites) in up to RETRY_PASSES_MAX more passes."""
    failed: list[int] = []
    body = job_body(schedule)
    statuses: Counter[str] = Counter()

    async def send(session: aiohttp.ClientSession, worker: int, item: int) -> None:
        url = f"{urls[worker % len(urls)]}/v1.0/jobs/scale-{item:07d}"
        try:
            await post_expecting(session, url, body, 204)
        except Exception as error:
            failed.append(item)
            if isinstance(error, RequestError):
                statuses[f"http {error.status}"] += 1
            raise
        progress.created += 1

    first = await closed_loop(send, range(jobs), in_flight)
    # RequestError alone says nothing: count the first pass's failures by status instead.
    first.errors.update(statuses)
    del first.errors[RequestError.__name__]
    for _ in range(RETRY_PASSES_MAX):
        if not failed:
            break
        again, failed[:] = list(failed), []
        await closed_loop(send, again, in_flight)
    if failed:
        raise RuntimeError(f"{len(failed)} creates still failing after {RETRY_PASSES_MAX} retries")
    return first


def wait_for_jobs(cluster: LocalCluster, jobs: int, timeout_s: float) -> dict[str, int]:
    """Wait until every node holds `jobs` jobs; return the last counts read (on timeout they
    differ, or are empty if no node answered in time: a busy node may miss a 2 s probe)."""
    deadline = time.monotonic() + timeout_s
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        try:
            counts = jobs_everywhere(cluster)
        except (OSError, ValueError):
            counts = {}
        if counts and set(counts.values()) == {jobs}:
            break
        time.sleep(POLL_S)
    return counts


# -- restarts ----------------------------------------------------------------------------------


def probe_ready(node: NodeProcess) -> int | None:
    """The status of the node's readiness probe; None while it does not answer HTTP."""
    try:
        with urllib.request.urlopen(
            f"{node.url}/v1.0/healthz/ready", timeout=PROBE_TIMEOUT_S
        ) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def start_timed(
    cluster: LocalCluster, timeout_s: float, nodes: list[NodeProcess] | None = None
) -> dict[str, object]:
    """Start the (stopped) `nodes`, every node by default; seconds until each serves HTTP, until
    each is ready, and until the cluster is ready."""
    nodes = cluster.nodes if nodes is None else nodes
    started = time.monotonic()
    for node in nodes:
        cluster.start_node(node.node_id)
    serving: dict[str, float] = {}
    ready: dict[str, float] = {}
    deadline = started + timeout_s
    while len(ready) < len(nodes):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not every node ready within {timeout_s} s: ready {ready}")
        for node in nodes:
            if node.node_id not in ready:
                _probe_into(node, started, serving, ready)
        time.sleep(POLL_S)
    cluster.wait_ready(max(1.0, deadline - time.monotonic()))
    return {
        "serving_s": serving,
        "ready_s": ready,
        "cluster_ready_s": round(time.monotonic() - started, 2),
    }


def _probe_into(
    node: NodeProcess, started: float, serving: dict[str, float], ready: dict[str, float]
) -> None:
    if not node.running():
        raise RuntimeError(f"{node.node_id} exited while starting; see {node.log_file}")
    status = probe_ready(node)
    elapsed = round(time.monotonic() - started, 2)
    if status is not None:
        serving.setdefault(node.node_id, elapsed)
    if status == 204:
        ready[node.node_id] = elapsed


def restart_after_kill(cluster: LocalCluster, jobs: int, timeout_s: float) -> dict[str, object]:
    for node in cluster.nodes:
        cluster.kill(node.node_id)
    figures = start_timed(cluster, timeout_s)
    return {**figures, **after_restart(cluster, jobs, timeout_s)}


def restart_one_after_kill(cluster: LocalCluster, jobs: int, timeout_s: float) -> dict[str, object]:
    """One node SIGKILLed and restarted while the others serve: the usual restart."""
    node = cluster.nodes[-1]
    cluster.kill(node.node_id)
    figures = start_timed(cluster, timeout_s, [node])
    return {**figures, **after_restart(cluster, jobs, timeout_s)}


def restart_after_clean_stop(
    cluster: LocalCluster, jobs: int, timeout_s: float
) -> dict[str, object]:
    started = time.monotonic()
    cluster.stop()
    stop_s = round(time.monotonic() - started, 2)
    figures = start_timed(cluster, timeout_s)
    return {"stop_s": stop_s, **figures, **after_restart(cluster, jobs, timeout_s)}


def after_restart(cluster: LocalCluster, jobs: int, timeout_s: float) -> dict[str, object]:
    """Job counts (which must all be `jobs` at once: a ready node has caught up) and memory."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            counts = jobs_everywhere(cluster)
            break
        except OSError:
            # A node busy right after its start may not answer within the probe's 2 s: ask
            # again (the counts, once read, are taken as they are).
            if time.monotonic() > deadline:
                raise
    time.sleep(SETTLE_S)
    return {"jobs": counts, "jobs_ok": set(counts.values()) == {jobs}, "rss_mib": memory(cluster)}


# -- the run -------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, object]:
    with tock_cluster() as cluster:
        time.sleep(SETTLE_S)
        figures: dict[str, object] = {
            "jobs": args.jobs,
            "in_flight": args.in_flight,
            "schedule": args.schedule,
        }
        figures["rss_mib_empty"] = memory(cluster)
        progress = Progress()
        watch = SnapshotWatch(cluster.nodes, lambda: progress.created)
        watch.start()
        urls = [node.url for node in cluster.nodes]
        epoch, term = epoch_and_term(cluster)
        campaigns = early_campaigns(cluster)
        load = asyncio.run(create_jobs(urls, args.jobs, args.in_flight, args.schedule, progress))
        figures["create"] = load.figures()
        counts = wait_for_jobs(cluster, args.jobs, args.ready_timeout)
        if set(counts.values()) != {args.jobs}:
            raise RuntimeError(f"nodes hold {counts} jobs, not {args.jobs}")
        epoch_after, term_after = epoch_and_term(cluster)
        # With every node up throughout, any new epoch or term is spurious: a node judged dead
        # (or its clock off) while busy, or an election.
        figures["epochs_during_create"] = epoch_after - epoch
        figures["elections_during_create"] = term_after - term
        figures["early_campaigns_during_create"] = early_campaigns(cluster) - campaigns
        time.sleep(SETTLE_S)
        figures["rss_mib_full"] = memory(cluster)
        figures["ram_bytes_per_job"] = ram_bytes_per_job(figures, args.jobs)
        watch.stop(args.ready_timeout)
        figures["snapshots"] = [asdict(snapshot) for snapshot in watch.done]
        figures["raft_files_bytes"] = {node.node_id: raft_files(node) for node in cluster.nodes}
        figures["restart_kill"] = restart_after_kill(cluster, args.jobs, args.ready_timeout)
        figures["restart_clean"] = restart_after_clean_stop(cluster, args.jobs, args.ready_timeout)
        figures["restart_one"] = restart_one_after_kill(cluster, args.jobs, args.ready_timeout)
    return figures


# -- the table -----------------------------------------------------------------------------------


def print_table(figures: dict[str, object]) -> None:
    create = figures["create"]
    assert isinstance(create, dict)
    print(
        f"create {figures['jobs']} jobs, {figures['in_flight']} in flight: "
        f"{create['requests_per_s']}/s over {create['seconds']} s, p50 {create['latency_ms_p50']}"
        f" ms, p99 {create['latency_ms_p99']} ms, errors {create['errors']}, "
        f"driver cpu {create['driver_cpu_pct']}%; new epochs {figures['epochs_during_create']}, "
        f"new terms {figures['elections_during_create']} (every node up: both should be 0; "
        f"{figures['early_campaigns_during_create']} begun by a closed connection)"
    )
    print(
        f"{'node':>4} {'rss@0':>8} {'rss@N':>8} {'journal':>10} {'dump':>10}  (MiB)"
        f" {'RAM B/job':>10}"
    )
    for node_id, empty in _dict(figures["rss_mib_empty"]).items():
        files = _dict(_dict(figures["raft_files_bytes"])[node_id])
        journal, dump = (_mib(files.get(name, 0)) for name in ("raft.journal", "raft.dump"))
        full = _dict(figures["rss_mib_full"])[node_id]
        per_job = _dict(figures["ram_bytes_per_job"])[node_id]
        print(f"{node_id:>4} {empty:>8} {full:>8} {journal:>10.1f} {dump:>10.1f} {per_job:>17}")
    snapshots = figures["snapshots"]
    assert isinstance(snapshots, list)
    for snapshot in snapshots:
        print(
            f"snapshot {snapshot['node']}: {snapshot['seconds']} s "
            f"(started at {snapshot['jobs_created_at_start']} jobs created)"
        )
    for kind in ("restart_kill", "restart_clean", "restart_one"):
        restart = _dict(figures[kind])
        print(
            f"{kind}: serving {restart['serving_s']} ready {restart['ready_s']} "
            f"cluster ready {restart['cluster_ready_s']} s, jobs ok {restart['jobs_ok']}, "
            f"rss {restart['rss_mib']}"
            + (f", stop {restart['stop_s']} s" if "stop_s" in restart else "")
        )


def _mib(size: object) -> float:
    assert isinstance(size, int)
    return size / 2**20


def _float(value: object) -> float:
    assert isinstance(value, int | float)
    return float(value)


def _dict(value: object) -> dict[str, object]:
    assert isinstance(value, dict)
    return value


def main(argv: list[str]) -> dict[str, object]:
    parser = argparse.ArgumentParser(
        prog="scripts/bench scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs to create (100000)")
    parser.add_argument("--in-flight", type=int, default=64, help="concurrent creates (64)")
    parser.add_argument(
        "--schedule", default=JOB_SCHEDULE, help=f"every job's schedule ({JOB_SCHEDULE})"
    )
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=600.0,
        help="bound in s on every wait: jobs everywhere, snapshots ending, restarts (600)",
    )
    args = parser.parse_args(argv)
    figures = run(args)
    print_table(figures)
    return figures
