"""GET /metrics through prometheus-client: parsed by the library's own parser, every family in
base units with the type it claims, counters ending in `_total`, real histograms, process
metrics, and per-app labels capped. Over real HTTP against a real one-node Raft store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from node.app_counter import OTHER_APP, AppCounter
from node.engine.metrics import TIME_BUCKETS_S
from node.http.metrics import APP_LABELS_MAX, METRICS_CONTENT_TYPE, capped_labels
from tests.support.metrics import families
from tests.unit.node.api_node import ADMIN, LiveNode

# More apps than get labels of their own, and jobs per app: the first app gets two.
APPS = APP_LABELS_MAX + 7
# The Dapr scheduler's families under tock names, and their types.
DAPR_FAMILIES = {
    "tock_jobs_created": "counter",
    "tock_jobs_triggered": "counter",
    "tock_jobs_failed": "counter",
    "tock_jobs_undelivered": "counter",
    "tock_trigger_latency_seconds": "histogram",
}
# The parts of a name that would say a unit other than a base unit.
NON_BASE_UNITS = ("_ms", "_milliseconds", "_kb", "_mb", "_minutes")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    live = LiveNode(tmp_path_factory.mktemp("metrics")).start()
    for k in range(APPS):
        headers = {"dapr-app-id": f"app-{k:03d}"}
        for name in ("a", "b") if k == 0 else ("a",):
            created = live.call("POST", f"/v1.0/jobs/{name}", {"dueTime": "1h"}, headers)
            assert created.status == 204, created
    yield live
    live.stop()


def scrape(node: LiveNode) -> str:
    answer = node.call("GET", "/metrics", headers=ADMIN)
    assert answer.status == 200
    assert answer.headers["Content-Type"] == METRICS_CONTENT_TYPE
    return answer.body.decode()


def test_the_dapr_scheduler_families_are_there_with_their_types(node: LiveNode) -> None:
    found = families(scrape(node))
    assert {name: found[name].type for name in DAPR_FAMILIES} == DAPR_FAMILIES
    for name in ("tock_raft_term", "tock_raft_commit_index", "tock_raft_applied_index"):
        assert found[name].type == "gauge"
    assert found["tock_raft_leader_changes"].type == "counter"
    assert found["tock_raft_leader_lost_campaigns"].type == "counter"
    assert found["tock_deliveries_in_flight"].type == "gauge"
    assert found["tock_raft_entry_largest_bytes"].unit in ("", "bytes")


def test_counters_end_in_total_and_names_use_base_units(node: LiveNode) -> None:
    for family in text_string_to_metric_families(scrape(node)):
        assert not any(unit in family.name for unit in NON_BASE_UNITS), family.name
        if family.type != "counter":
            continue
        for sample in family.samples:
            assert sample.name in (f"{family.name}_total", f"{family.name}_created"), sample


def test_the_trigger_latency_is_a_real_histogram_in_seconds(node: LiveNode) -> None:
    histogram = families(scrape(node))["tock_trigger_latency_seconds"]
    names = {sample.name for sample in histogram.samples}
    stem = "tock_trigger_latency_seconds"
    assert {f"{stem}_bucket", f"{stem}_sum", f"{stem}_count"} <= names
    bounds = [s.labels["le"] for s in histogram.samples if s.name == f"{stem}_bucket"]
    assert [float(b) for b in bounds] == [*TIME_BUCKETS_S, float("inf")]


def test_process_metrics_come_from_the_process_collector(node: LiveNode) -> None:
    found = families(scrape(node))
    assert found["process_cpu_seconds"].type == "counter"
    (memory,) = found["process_resident_memory_bytes"].samples
    assert memory.value > 1_000_000


def test_per_app_labels_are_capped_and_the_rest_summed(node: LiveNode) -> None:
    created = families(scrape(node))["tock_jobs_created"].samples
    by_app = {
        (s.labels["namespace"], s.labels["app"]): s.value
        for s in created
        if s.name == "tock_jobs_created_total"
    }
    assert len(by_app) == APP_LABELS_MAX + 1
    assert by_app[("default", "app-000")] == 2
    assert by_app[("default", f"app-{APP_LABELS_MAX - 1:03d}")] == 1
    assert by_app[OTHER_APP] == APPS - APP_LABELS_MAX
    assert sum(by_app.values()) == APPS + 1


def test_capped_labels_keep_the_first_apps_by_name() -> None:
    apps = [("ns", "c"), ("ns", "a"), ("ns", "b")]
    assert capped_labels(apps, labels_max=2) == {
        ("ns", "a"): ("ns", "a"),
        ("ns", "b"): ("ns", "b"),
        ("ns", "c"): OTHER_APP,
    }


def test_an_app_counter_counts_apps_past_its_bound_together() -> None:
    counter = AppCounter(apps_max=2)
    for app in ("a", "b", "c", "d", "a"):
        counter.count("ns", app)
    assert counter.by_app() == {("ns", "a"): 2, ("ns", "b"): 1, OTHER_APP: 2}
    assert counter.total() == 5
