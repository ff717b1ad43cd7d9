"""A crash loop in a real 3-process cluster: the node whose trigger engine keeps crashing says so
in its log, answers 503 on its readiness probe, gives up its lease, and the jobs it owned fire
on the other nodes.

Method: jobs `@every 1s` owned by the victim fire steadily; the victim is then restarted with
its engine's fault point armed for good (TOCK_TEST_FAULTS=engine:always, for that node only).
Its engine crashes at every restart, so within a few backoffs it is crash looping: the test
waits for the probe's 503 and for the survivors to count it dead with no partitions, then for
new triggers of every one of its jobs.
"""

from __future__ import annotations

import time
from pathlib import Path

from store.fault_points import ENVIRONMENT_VARIABLE
from tests.integration.node_helpers import call, cluster_status, running_rig, wait_until
from tests.integration.test_node_failover import names_owned_by
from tests.support.metrics import sample_value

VICTIM_JOBS = 3
PARTITIONS = 1024
# Crash looping after 6 crashes (about 3 s of backoffs), dead 1.5 s after the last heartbeat,
# then a new epoch: well within this.
MOVED_S_MAX = 20.0
FIRED_AGAIN_S_MAX = 10.0
CRASH_LOOP = b"task engine is crash looping"


def test_a_node_whose_engine_crash_loops_is_not_ready_and_its_jobs_fire_elsewhere(
    tmp_path: Path,
) -> None:
    with running_rig(tmp_path) as rig:
        leader = rig.cluster.wait_ready()
        victim = next(n for n in rig.cluster.nodes if n.node_id != leader)
        survivor = rig.cluster.node(leader)
        app = rig.app()
        names = names_owned_by(app, victim.node_id, VICTIM_JOBS)
        assert len(names) == VICTIM_JOBS, "no names for the victim among 200"
        for name in names:
            app.create(name, {"schedule": "@every 1s"}, node=int(leader[1:]))
        for name in names:
            assert len(rig.sink.wait_for(name, 2, timeout_s=10)) >= 2, name

        rig.cluster.restart(victim.node_id, env={ENVIRONMENT_VARIABLE: "engine:always"})

        def moved() -> bool:
            try:
                ready = call(victim.url + "/v1.0/healthz/ready")
            except OSError:
                return False  # still starting
            survivor_view = cluster_status(rig.cluster, int(survivor.node_id[1:]))
            members = {m["id"]: m for m in survivor_view["members"]}
            # The probe answers 503 while the restarted node catches up as well: only the
            # crash loop's 503 counts here.
            return (
                ready.status == 503
                and CRASH_LOOP in ready.body
                and members[victim.node_id]["alive"] is False
                and members[victim.node_id]["partitions"] == 0
                and sum(m["partitions"] for m in members.values() if m["alive"]) == PARTITIONS
            )

        wait_until(moved, MOVED_S_MAX, f"{victim.node_id} not ready and its partitions moved")
        moved_ms = time.time_ns() // 1_000_000

        def fired_again() -> bool:
            return all(
                sum(c.received_ms > moved_ms for c in rig.sink.calls_for(name)) >= 2
                for name in names
            )

        wait_until(fired_again, FIRED_AGAIN_S_MAX, "every job of the victim fired elsewhere")

        ready = call(victim.url + "/v1.0/healthz/ready")
        assert ready.status == 503 and CRASH_LOOP in ready.body, ready
        metrics = call(victim.url + "/metrics", headers=rig.cluster.admin_headers()).body.decode()
        assert sample_value(metrics, "tock_task_healthy", {"task": "engine"}) == 0, metrics
        log = victim.log_file.read_text(errors="replace")
        assert log.count("node unhealthy") == 1, "said once per change, not per probe"
        assert "task engine crashed" in log and "InjectedFault" in log and "Traceback" in log
