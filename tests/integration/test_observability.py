"""A real node seen from outside: its JSON log lines and its /metrics after real triggers.

Method: one node process started by `tock node --log-format json --log-level DEBUG` (through
LocalCluster), a real app that fails the jobs named `fail-*`, and jobs of an app of this test.
Every line the node writes must be one JSON object with time, level, node id, logger and
message; a request's lines carry its request id (given or made, always echoed); a delivery's
lines carry the job, app and trigger id. /metrics, read with prometheus-client's own parser,
counts those triggers under the Dapr scheduler's families, per app, in seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from cluster.local import LocalCluster
from tests.integration.node_helpers import call, wait_until
from tests.support.local_cluster import running_cluster
from tests.support.metrics import families, sample_value
from tests.support.sink import Sink

APP = "observed"
HEADERS = {"dapr-app-id": APP}
FIRE_S_MAX = 20.0
LOG_S_MAX = 10.0
REQUIRED_KEYS = {"time", "level", "node", "logger", "message"}


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    sink = Sink(status_for=lambda name, n: 500 if name.startswith("fail") else 200).start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, sink: Sink) -> Iterator[LocalCluster]:
    args = ("--log-format", "json", "--log-level", "DEBUG")
    with running_cluster(tmp_path_factory.mktemp("observed"), nodes=1, node_args=args) as cluster:
        url = cluster.nodes[0].url
        assert call(f"{url}/v1.0/apps/{APP}", "PUT", {"url": sink.url}).status == 204
        for name in ("tick", "fail-tick"):
            body = {"schedule": "@every 1s", "failurePolicy": {"drop": {}}}
            assert call(f"{url}/v1.0/jobs/{name}", "POST", body, HEADERS).status == 204
        wait_until(
            lambda: len(sink.calls_for("tick")) >= 2 and len(sink.calls_for("fail-tick")) >= 2,
            FIRE_S_MAX,
            "both jobs fired twice",
        )
        yield cluster


def log_lines(cluster: LocalCluster) -> list[dict[str, Any]]:
    text = cluster.nodes[0].log_file.read_text(errors="replace")
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(line, dict) for line in lines)
    return lines


def test_every_log_line_is_one_json_object_with_the_node_id(node: LocalCluster) -> None:
    lines = log_lines(node)
    assert lines, "the node logged nothing"
    for line in lines:
        assert line.keys() >= REQUIRED_KEYS, line
        assert line["node"] == "n1"
    assert any(line["message"].startswith("node n1 serving") for line in lines)


def test_a_request_id_is_echoed_and_in_the_requests_log_lines(node: LocalCluster) -> None:
    url = node.nodes[0].url
    answer = call(f"{url}/v1.0/jobs/tick", headers={**HEADERS, "x-request-id": "obs-42"})
    assert answer.status == 200 and answer.headers["x-request-id"] == "obs-42"
    made = call(f"{url}/v1.0/jobs/nothing-here", headers=HEADERS)
    assert made.status == 404
    made_id = made.headers["x-request-id"]

    def logged() -> bool:
        ids = {line.get("request_id"): line for line in log_lines(node)}
        return "obs-42" in ids and made_id in ids

    wait_until(logged, LOG_S_MAX, "both requests logged with their ids")
    line = next(line for line in log_lines(node) if line.get("request_id") == "obs-42")
    assert "/v1.0/jobs/tick" in line["message"]


def test_a_failed_delivery_is_logged_with_its_job_app_and_trigger_id(
    node: LocalCluster, sink: Sink
) -> None:
    failed = [line for line in log_lines(node) if line["message"] == "trigger failed"]
    assert failed, "no failed delivery logged"
    line = failed[0]
    assert (line["job"], line["app"], line["level"]) == ("fail-tick", APP, "INFO")
    assert line["trigger_id"] in {c.headers["tock-trigger-id"] for c in sink.calls_for("fail-tick")}


def test_metrics_count_the_triggers_per_app_in_base_units(node: LocalCluster, sink: Sink) -> None:
    text = call(node.nodes[0].url + "/metrics", headers=node.admin_headers()).body.decode()
    found = families(text)
    app = {"namespace": "default", "app": APP}
    assert sample_value(text, "tock_jobs_created_total", app) == 2
    assert sample_value(text, "tock_jobs_triggered_total", app) >= 2
    assert sample_value(text, "tock_jobs_failed_total", app) >= 2
    latency = found["tock_trigger_latency_seconds"]
    assert latency.type == "histogram"
    count = sample_value(text, "tock_trigger_latency_seconds_count")
    assert count >= 4
    assert sample_value(text, "tock_trigger_latency_seconds_bucket", {"le": "+Inf"}) == count
    # A trigger is seldom a second late on an idle node: the sum is in seconds, not ms.
    assert sample_value(text, "tock_trigger_latency_seconds_sum") < count
    assert found["process_cpu_seconds"].type == "counter"
    assert sample_value(text, "tock_raft_is_leader") == 1
