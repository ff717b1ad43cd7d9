"""scripts/bench as a user points it at a cluster of their own: --target, an app token, reports.

Method: a real 3-node cluster in token mode; an app token is issued for app `bench`; then
`scripts/bench.py` runs as a process, short, against that cluster's three nodes (`--target`),
first `create`, then `trigger` (its app is the benchmark's own sink on 127.0.0.1). Checked: each
run exits 0; its JSON shows creates that all succeeded and triggers that all arrived, none early,
none twice; its markdown report lists the figures and embeds plots that exist as PNG files;
neither file holds the token; and the jobs went to app `bench`, not `default`. Then `compare`, on
local clusters of its own and a real etcd: both ratios come out of one run, and the APScheduler
reference delivered every trigger too. `scale`, short, on a cluster of its own: every job on every
node after each of its restarts. `watch`, short: every trigger once, and what it cost the nodes.
`apply`, in-process, times the job machine's commands. And `tock bench` is the harness.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.local import LocalCluster
from tests.integration.node_helpers import call
from tests.support.local_cluster import running_cluster

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 100.0
PNG_MAGIC = b"\x89PNG"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("bench"), open_api=False) as running:
        yield running


@pytest.fixture(scope="module")
def app_token(cluster: LocalCluster) -> str:
    url = f"{cluster.nodes[0].url}/admin/apps/bench/tokens"
    answer = call(url, "POST", b"", cluster.admin_headers())
    assert answer.status == 201, answer
    token: str = answer.json["token"]
    return token


def bench(results: Path, cluster: LocalCluster, token: str, *case: str) -> dict[str, object]:
    """Run one case against the cluster; its saved record (JSON), after checking its report."""
    targets = [arg for node in cluster.nodes for arg in ("--target", node.url)]
    command = [sys.executable, "scripts/bench.py", "--results", str(results), *case]
    command += [*targets, "--app", "bench", "--token", token]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (record_file,) = results.glob(f"{case[0]}-*.json")
    record: dict[str, object] = json.loads(record_file.read_text())
    report = record_file.with_suffix(".md").read_text()
    assert token not in record_file.read_text() + report, "the app token was written out"
    images = [line.split("(")[1].rstrip(")") for line in report.splitlines() if "![" in line]
    assert images, report
    for image in images:
        assert (results / image).read_bytes()[:4] == PNG_MAGIC, image
    return record


def test_create_measures_an_existing_cluster_with_an_app_token(
    tmp_path: Path, cluster: LocalCluster, app_token: str
) -> None:
    record = bench(
        tmp_path, cluster, app_token, "create", "--seconds", "1", "--warmup", "0", "--no-etcd"
    )
    figures = record["figures"]
    assert isinstance(figures, dict)
    tock = figures["tock"]
    assert tock["done"] > 0 and tock["errors"] == {}, tock
    # The servers are not the harness's own: their CPU is not its to read.
    assert tock["server_cpu_pct"] is None and tock["server_cpu_us_per_request"] is None, tock
    listed = call(
        f"{cluster.nodes[0].url}/v1.0/jobs?prefix=bench-&limit=1",
        "GET",
        None,
        {"dapr-app-id": "bench", "dapr-api-token": app_token},
    )
    assert listed.status == 200 and listed.json["jobs"], listed


def test_trigger_measures_an_existing_cluster_and_draws_its_plots(
    tmp_path: Path, cluster: LocalCluster, app_token: str
) -> None:
    record = bench(
        tmp_path,
        cluster,
        app_token,
        "trigger",
        "--burst",
        "40",
        "--spread",
        "40",
        "--spread-seconds",
        "2",
    )
    figures = record["figures"]
    assert isinstance(figures, dict)
    for scenario in ("burst", "spread"):
        row = figures[scenario]
        assert row["delivered"] == 40 and row["missing"] == 0, row
        assert row["duplicates"] == 0 and row["early"] == 0, row
        assert row["cluster_cpu_pct"] is None and row["sink_cpu_pct"] >= 0, row
    # The reference: one plain client process posted as many requests to the same sink.
    assert figures["ceiling"]["requests"] == 40 and figures["ceiling"]["per_s"] > 0, figures
    assert figures["burst_over_ceiling"] > 0, figures


def bench_alone(results: Path, *case: str) -> tuple[dict[str, Any], str]:
    """Run one case on local clusters of its own; its figures and what it printed."""
    command = [sys.executable, "scripts/bench.py", "--results", str(results), *case]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (record_file,) = results.glob(f"{case[0]}-*.json")
    figures: dict[str, Any] = json.loads(record_file.read_text())["figures"]
    return figures, done.stdout


def test_tock_bench_is_the_harness() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "node.cli", "bench", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "cases: " in done.stdout and "trigger" in done.stdout, done.stdout
    # The trigger case's reference client is a helper process, not a case.
    assert "ceiling" not in done.stdout, done.stdout


def test_compare_reports_both_ratios_in_one_run(tmp_path: Path) -> None:
    """`compare` on its own local clusters: etcd for creates, APScheduler for triggers."""
    figures, stdout = bench_alone(
        tmp_path, "compare", "--seconds", "1", "--warmup", "0", "--jobs", "100"
    )
    for system in ("tock", "apscheduler"):
        row = figures["triggers"][system]
        assert row["delivered"] == 100 and row["early"] == 0 and row["duplicates"] == 0, row
    assert figures["ratio_triggers_tock_over_apscheduler"] > 0
    assert figures["creates"]["tock"]["errors"] == {}
    # etcd is Debian's etcd-server, which scripts/test installs.
    assert figures["ratio_creates_tock_over_etcd"] > 0, figures["creates"]["etcd"]
    # Both clusters run here: what a request cost each, their processes' CPU summed.
    for system in ("tock", "etcd"):
        row = figures["creates"][system]
        assert row["server_cpu_pct"] > 0 and row["server_cpu_us_per_request"] > 0, row
    assert figures["triggers"]["tock"]["cluster_cpu_us_per_trigger"] > 0, figures["triggers"]
    assert "tock / etcd" in stdout and "tock / APScheduler" in stdout


def test_scale_finds_every_job_on_every_node_after_each_restart(tmp_path: Path) -> None:
    """`scale` on a local cluster of its own, short, with jobs due within the timer horizon."""
    figures, _ = bench_alone(
        tmp_path, "scale", "--jobs", "300", "--schedule", "@every 30m", "--ready-timeout", "60"
    )
    assert figures["schedule"] == "@every 30m"
    assert figures["create"]["done"] == 300
    for restart in ("restart_kill", "restart_clean", "restart_one"):
        assert figures[restart]["jobs"] == {"n1": 300, "n2": 300, "n3": 300}, figures[restart]
    assert set(figures["ram_bytes_per_job"]) == {"n1", "n2", "n3"}


def test_apply_times_each_kind_of_command_on_one_replica(tmp_path: Path) -> None:
    """`apply`, in-process: its own assertions check that every ack ended or moved its job."""
    figures, stdout = bench_alone(tmp_path, "apply", "--jobs", "300", "--repeat", "1")
    assert set(figures["us_each"]) == {"put", "ack_ending", "ack_advancing"}, figures
    assert all(us > 0 for us in figures["us_each"].values()), figures
    assert figures["apply_us_per_trigger"] == 3 * figures["us_each"]["ack_ending"], figures
    assert "triggers/s per core" in stdout, stdout


def test_watch_counts_what_each_trigger_cost_the_cluster(tmp_path: Path) -> None:
    """`watch`, short, on a cluster of its own: every trigger once, and the nodes' CPU for it."""
    figures, stdout = bench_alone(tmp_path, "watch", "--jobs", "200", "--lead-seconds", "4")
    assert figures["delivered"] == 200 and figures["missing"] == 0, figures
    assert figures["duplicates"] == 0 and figures["early"] == 0, figures
    assert figures["cluster_cpu_pct"] > 0 and figures["cluster_cpu_us_per_trigger"] > 0, figures
    assert "us/trig" in stdout, stdout
