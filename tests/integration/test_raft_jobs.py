"""The real JobMachine carried by the Raft store: puts, one with a 1 MiB payload, are applied
on every node and leave equal replicas."""

from __future__ import annotations

from pathlib import Path

from store.codec import Put, encode_command
from store.jobs import JobSpec
from tests.integration.raft_cluster import RaftCluster, b64


def put(name: str, data: bytes) -> bytes:
    spec = JobSpec(name=name, due_time="2030-01-01T00:00:00Z", data=data)
    command = Put("default", "app", spec, False, 1_700_000_000_000, f"uid-{name}", "UTC")
    return encode_command(command)


def test_job_puts_are_replicated_through_the_raft_store(tmp_path: Path) -> None:
    with RaftCluster(tmp_path, extra_args=["--machine", "jobs"]) as cluster:
        cluster.start()
        cluster.wait_leader()
        commands = [b64(put(f"job-{i}", b'"small"')) for i in range(50)]
        results = cluster.nodes[1].ok("propose_many", commands=commands)["results"]
        assert all(r["ok"] and "ok=True" in r["result"] for r in results), results[:2]
        big = b'"' + b"x" * (1024 * 1024) + b'"'
        answer = cluster.nodes[2].ok("propose", command=b64(put("big", big)), timeout=30)
        assert "ok=True" in answer["result"], answer
        duplicate = cluster.nodes[0].ok("propose", command=b64(put("big", big)), timeout=30)
        assert "ok=False" in duplicate["result"], "overwrite=False must conflict"
        cluster.wait_converged()
