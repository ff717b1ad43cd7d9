"""Restarts and elections: a whole cluster restarted elects at once, a restarted follower deposes
no leader (the quiet start ends early only where no leader is known; store/raft/transport.py).

Method, on clusters of real raft_node.py processes under a light write load (IN_FLIGHT writes):
- whole cluster: each trial SIGKILLs every node at a random instant and starts them all again,
  every log intact. The cluster must agree on a leader within ELECTED_S_MAX of starting the
  processes (imports and the first tick included), well under the quiet start's 5-7 s that it
  took when every restarted node stayed quiet (5.3-5.5 s measured); the leader must have got
  there by ending its quiet start early.
- one follower: each trial SIGKILLs a follower of a live cluster at a random instant and starts
  it again. Once it has caught up, the leader and its term are the same: the follower heard of
  the live leader, stayed quiet and never campaigned.
- a link still down: each trial SIGKILLs every node and starts the middle address first, then
  the highest and, a moment later, the lowest, so that the highest one's first dial to the
  lowest likely fails and pysyncobj dials again only 5 s later. Every node ends its quiet
  start early; when the lowest wins, the highest hears of that leader from the middle one only,
  and must turn quiet again rather than depose it. Over all the trials the term grows by one
  per restart plus TERM_GROWTH_SLACK at most (without turning quiet again it grew by 3 in half
  the restarts).
The measured times and the seed are printed.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from typing import Any

from tests.chaos.trials import time_limit
from tests.integration.raft_cluster import (
    NodeError,
    RaftCluster,
    RaftNodeProcess,
    ticked,
    wait_for,
)
from tests.integration.raft_writer import PipelinedWriter, WriteLog, check_writes, node_writes

IN_FLIGHT = 20
# Starting three processes on a loaded 2-core machine, connecting, then one normal election
# timeout (0.4-1.4 s): about 1-2 s. Still well under the 5 s a quiet start alone would take.
ELECTED_S_MAX = 4.0
CONVERGE_S_MAX = 60.0
POLL_S = 0.02
# The follower and link tests run at least this many restarts whatever TOCK_CHAOS_TRIALS says.
RESTARTS_MIN = 3
LINK_RESTARTS_MIN = 6
# Elections a starved machine may cause on its own (a heartbeat late past the timeout), or a
# node whose normal deadline falls in the moment before it hears that a leader won.
TERM_GROWTH_SLACK = 2
# Between starting the highest node and the lowest: the highest dials before the lowest listens.
LOWEST_START_DELAY_S = 0.05

# The worst case of one trial, for the test's time limit.
TRIAL_S_MAX = 30.0


@time_limit(TRIAL_S_MAX)
def test_a_whole_cluster_restarted_elects_within_a_normal_election_timeout(
    make_cluster: Callable[..., RaftCluster], chaos_trials: int, chaos_random: random.Random
) -> None:
    cluster = make_cluster()
    log = WriteLog()
    for trial in range(chaos_trials):
        term = status_of(cluster.wait_leader())["term"]
        writer = PipelinedWriter(cluster, IN_FLIGHT, log)
        writer.start()
        delay_s = chaos_random.uniform(0.3, 1.5)
        time.sleep(delay_s)
        cluster.kill_all()
        writer.stop()
        started = time.monotonic()
        cluster.start()
        up_s = time.monotonic() - started
        elected = wait_elected(cluster, started + CONVERGE_S_MAX)
        elected_s = time.monotonic() - started
        leader = cluster.wait_leader(CONVERGE_S_MAX)
        print(
            f"trial {trial}: killed all {delay_s:.2f} s into the load; every node up "
            f"{up_s:.2f} s, {elected.name} elected {elected_s:.2f} s after the start, "
            f"{leader.name} followed by all {time.monotonic() - started:.2f} s after, "
            f"term {term} -> {status_of(leader)['term']}"
        )
        assert elected_s < ELECTED_S_MAX, f"elected only {elected_s:.2f} s after the restart"
        stats = transport_of(elected)
        assert stats["quiet_starts"] == 1, "the leader had not run before?"
        assert stats["quiet_starts_ended_early"] >= 1, "the leader waited out its quiet start"
        cluster.wait_converged(CONVERGE_S_MAX)
    print(log.summary())
    check_writes(log, {node.name: node_writes(node) for node in cluster.nodes})


@time_limit(TRIAL_S_MAX, RESTARTS_MIN)
def test_a_restarted_follower_stays_quiet_and_deposes_no_leader(
    make_cluster: Callable[..., RaftCluster], chaos_trials: int, chaos_random: random.Random
) -> None:
    cluster = make_cluster()
    log = WriteLog()
    for trial in range(max(RESTARTS_MIN, chaos_trials)):
        leader = cluster.wait_leader()
        term = status_of(leader)["term"]
        follower = chaos_random.choice([node for node in cluster.nodes if node is not leader])
        delay_s, down_s = chaos_random.uniform(0.3, 1.5), chaos_random.uniform(0.1, 1.0)
        writer = PipelinedWriter(cluster, IN_FLIGHT, log, prefer=leader)
        writer.start()
        time.sleep(delay_s)
        follower.kill()
        time.sleep(down_s)
        started = time.monotonic()
        follower.start()
        caught_up = functools.partial(follows, follower, leader)
        wait_for(caught_up, CONVERGE_S_MAX, f"{follower.name} to catch up", follower)
        caught_up_s = time.monotonic() - started
        writer.stop()
        cluster.wait_converged(CONVERGE_S_MAX)
        print(
            f"trial {trial}: {follower.name} down {down_s:.2f} s, {delay_s:.2f} s into the "
            f"load; it follows {leader.name} again {caught_up_s:.2f} s after its start"
        )
        stats = transport_of(follower)
        assert stats["quiet_starts"] == 1
        assert stats["quiet_starts_ended_early"] == 0, "it took the live leader for none"
        assert cluster.wait_leader() is leader
        assert status_of(leader)["term"] == term, "the restart pushed an election"
    print(log.summary())
    check_writes(log, {node.name: node_writes(node) for node in cluster.nodes})


@time_limit(TRIAL_S_MAX, LINK_RESTARTS_MIN)
def test_a_restart_with_a_link_still_down_elects_once(
    make_cluster: Callable[..., RaftCluster], chaos_trials: int, chaos_random: random.Random
) -> None:
    cluster = make_cluster()
    lowest, middle, highest = sorted(cluster.nodes, key=lambda node: node.address)
    restarts = max(LINK_RESTARTS_MIN, chaos_trials)
    term_before = status_of(cluster.wait_leader())["term"]
    resumed = 0
    for trial in range(restarts):
        delay_s = chaos_random.uniform(0.0, 0.5)
        time.sleep(delay_s)
        term = status_of(cluster.wait_leader())["term"]
        cluster.kill_all()
        started = time.monotonic()
        middle.start()
        wait_for(functools.partial(has_ticked, middle), CONVERGE_S_MAX, "ticking", middle)
        highest.start()
        time.sleep(LOWEST_START_DELAY_S)
        lowest.start()
        leader = cluster.wait_leader(CONVERGE_S_MAX)
        statuses = {node.name: status_of(node) for node in cluster.nodes}
        resumed += sum(s["transport"]["quiet_starts_resumed"] for s in statuses.values())
        print(
            f"trial {trial}: after {delay_s:.2f} s, {leader.name} followed by all "
            f"{time.monotonic() - started:.2f} s after the start, term {term} -> "
            f"{statuses[leader.name]['term']}; quiet again: "
            + ", ".join(
                f"{n}: {s['transport']['quiet_starts_resumed']}" for n, s in statuses.items()
            )
        )
    term_after = status_of(cluster.wait_leader())["term"]
    print(f"term {term_before} -> {term_after} over {restarts} restarts; {resumed} quiet again")
    assert term_after - term_before <= restarts + TERM_GROWTH_SLACK, "restarts pushed elections"


def wait_elected(cluster: RaftCluster, deadline: float) -> RaftNodeProcess:
    """The first node seen as leader (it won a majority's votes), polled every POLL_S.

    Every node following it takes longer when a node started before the peer it dials was
    listening: pysyncobj dials again only after 5 s (connectionRetryTime).
    """
    while time.monotonic() < deadline:
        for node in cluster.nodes:
            status = node.status()
            if status is not None and status["role"] == "leader":
                return node
        time.sleep(POLL_S)
    raise NodeError(f"no leader within {CONVERGE_S_MAX} s of the restart")


def status_of(node: RaftNodeProcess) -> dict[str, Any]:
    return node.ok("status")


def transport_of(node: RaftNodeProcess) -> dict[str, int]:
    counters: dict[str, int] = status_of(node)["transport"]
    return counters


def has_ticked(node: RaftNodeProcess) -> bool:
    status = node.status()
    return status is not None and ticked(status)


def follows(node: RaftNodeProcess, leader: RaftNodeProcess) -> bool:
    status = node.status()
    return status is not None and bool(status["ready"]) and status["leader"] == leader.address
