"""Clock skew, for real: one node of three runs under libfaketime with its wall clock shifted,
ahead and behind. What must hold: that node says it is off (not ready, the offset in the
answer), stands by (not live, no partitions, no trigger from it), and no trigger reaches the app
before its scheduled time by the test's own clock; the other two fire every job.

Method: a real 3-node cluster on 127.0.0.1 whose node n3 is started under libfaketime
(`env LD_PRELOAD=.../libfaketime.so.1 FAKETIME=±3s tock node ...`; its monotonic clock
shifted by the same constant, so its rate is right); one-shot jobs due a few seconds later,
spread over every partition owner; the sink stamps each delivery with the test's clock.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cluster.local import LocalCluster, LocalClusterConfig
from cluster.membership import MembershipConfig
from tests.integration.node_helpers import call, rfc3339_ms, wait_until
from tests.support.local_cluster import port_block
from tests.support.sink import Sink

SKEW_S = 3
JOBS = 30
# A create that meets a leader change answers 503; the next leader is there within seconds.
CREATE_ATTEMPTS_MAX = 10
CREATE_RETRY_S = 0.5
READY_S_MAX = 60.0
# The bound a correct clock allows: deliveries are never early by more than this.
EARLY_MS_MAX = MembershipConfig().max_clock_offset_ms

# libfaketime preloaded through `env`, which execs: the `faketime` command forks instead, and
# stopping the node's pid would stop faketime and leave the node running.
LIBFAKETIME = next(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"), None)

pytestmark = pytest.mark.skipif(
    shutil.which("faketime") is None or LIBFAKETIME is None, reason="needs faketime"
)


def shifted(offset: str) -> Callable[[str], list[str]]:
    """Node n3's process under faketime, its wall clock `offset` from the others'."""

    def prefix(node_id: str) -> list[str]:
        if node_id != "n3":
            return []
        # The monotonic clock is shifted by the same constant: its rate, all that leases and
        # timeouts read, is unchanged. (libfaketime's sleep fails with EINVAL when only the
        # wall clock is shifted.)
        return ["env", f"LD_PRELOAD={LIBFAKETIME}", f"FAKETIME={offset}"]

    return prefix


@pytest.fixture(params=[f"+{SKEW_S}s", f"-{SKEW_S}s"])
def skewed(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    offset = str(request.param)
    print(f"clock skew: n3 under faketime {offset}")
    base = port_block(3 * 15)
    cluster = LocalCluster(
        LocalClusterConfig(
            nodes=3,
            data_dir=tmp_path,
            http_port=base,
            raft_port=base + 15,
            grpc_port=base + 30,
            time_zone="UTC",
            command_prefix=shifted(offset),
        )
    )
    cluster.start()
    try:
        cluster.wait_ready(READY_S_MAX, nodes=["n1", "n2"])
        yield cluster
    except BaseException:
        for node in cluster.nodes:
            if node.log_file.exists():
                tail = node.log_file.read_text(errors="replace").splitlines()[-30:]
                print(f"---- {node.node_id} log (last 30 lines) ----", *tail, sep="\n")
        raise
    finally:
        cluster.stop()


def create_through_leader_changes(url: str, job: dict[str, str]) -> None:
    """Create a job, again if a leader change leaves the outcome unknown (503).

    The skewed node is a Raft member like any other and may win an election; once it sees its
    clock is off it hands the leadership on, and a create in flight then answers 503. Creating
    the same job again is safe: the second create overwrites the first with the same job.
    """
    created = call(url, "POST", job)
    for _ in range(CREATE_ATTEMPTS_MAX - 1):
        if created.status != 503:
            break
        time.sleep(CREATE_RETRY_S)
        created = call(url, "POST", job)
    assert created.status == 204, created


def test_a_skewed_node_stands_by_and_no_trigger_is_early(skewed: LocalCluster) -> None:
    cluster = skewed
    n1, n3 = cluster.node("n1"), cluster.node("n3")

    def n3_says_its_clock_is_off() -> bool:
        answer = call(f"{n3.url}/v1.0/healthz/ready")
        return answer.status == 503 and b"clock offset" in answer.body

    try:
        wait_until(n3_says_its_clock_is_off, 30.0, "n3 not ready because of its clock")
    except AssertionError:
        print(call(f"{n3.url}/v1.0/healthz/ready"), cluster.cluster_status("n1"))
        print(n3.log_file.read_text(errors="replace")[-4000:])
        raise
    answer = call(f"{n3.url}/v1.0/healthz/ready")
    print(f"clock skew: n3 ready answer {answer.body!r}")

    def n3_stands_by() -> bool:
        members = cluster.cluster_status("n1")["members"]
        assert isinstance(members, list)
        return any(m["id"] == "n3" and not m["alive"] and m["partitions"] == 0 for m in members)

    wait_until(n3_stands_by, 20.0, "n3 out of the live set with no partitions")

    sink = Sink().start()
    try:
        assert call(f"{n1.url}/v1.0/apps/default", "PUT", {"url": sink.url}).status == 204
        due = datetime.now(UTC) + timedelta(seconds=4)
        scheduled: dict[str, int] = {}
        for k in range(JOBS):
            name = f"skew-{k}"
            at = (due + timedelta(milliseconds=37 * k)).isoformat().replace("+00:00", "Z")
            node = cluster.nodes[k % 2]  # n1 and n2 take the creates.
            create_through_leader_changes(f"{node.url}/v1.0/jobs/{name}", {"dueTime": at})
            scheduled[name] = rfc3339_ms(at)
        wait_until(lambda: {c.name for c in sink.calls} >= set(scheduled), 30.0, "every job")
        early = [
            (c.name, scheduled[c.name] - c.received_ms, c.headers.get("tock-node"))
            for c in sink.calls
            if c.received_ms < scheduled[c.name] - EARLY_MS_MAX
        ]
        from_n3 = [c.name for c in sink.calls if c.headers.get("tock-node") == "n3"]
        latest = max(c.received_ms - scheduled[c.name] for c in sink.calls)
        print(f"clock skew: {len(sink.calls)} deliveries, latest {latest} ms after its time")
        assert early == [], f"early deliveries (name, ms early, node): {json.dumps(early)}"
        assert from_n3 == []
    finally:
        sink.stop()
    # Its clock still off, n3 has stayed out all along.
    assert n3_says_its_clock_is_off()
