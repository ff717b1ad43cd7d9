"""node/engine/parking.py: due triggers of apps nobody can take yet, parked until one can.

Method: plain state checks on the keys and partitions of real Jobs (partition set by hand) and
the engine's metrics.
"""

from __future__ import annotations

from node.engine.metrics import EngineMetrics
from node.engine.parking import Parking
from store.jobs import Job, JobSpec, derive_job
from store.machine import AppKey, AppRoute

CREATED_MS = 1_700_000_000_000
ROUTE = AppRoute("http://127.0.0.1:1", "token")
A: AppKey = ("default", "a")
B: AppKey = ("default", "b")


def job(app: AppKey, name: str, partition: int = 0) -> Job:
    spec = JobSpec(name=name, due_time="2023-11-14T22:13:20Z")
    derived = derive_job(spec, app[0], app[1], f"uid-{name}", CREATED_MS, "UTC", 16)
    return derived._replace(partition=partition)


def parking_with(*jobs: Job) -> tuple[Parking, EngineMetrics]:
    metrics = EngineMetrics()
    parking = Parking(metrics)
    for parked in jobs:
        parking.park(parked.key, parked.partition)
    return parking, metrics


def test_an_app_is_deliverable_with_a_url_or_a_watcher_anywhere() -> None:
    parking, _ = parking_with()
    assert not parking.deliverable(A)
    parking.update({A: ROUTE}, set())
    assert parking.deliverable(A) and parking.route(A) == ROUTE
    parking.update({}, {A})
    assert parking.deliverable(A) and parking.route(A) is None
    parking.update({}, set())
    assert not parking.deliverable(A)


def test_parked_jobs_are_counted_until_unparked_once() -> None:
    first, second = job(A, "first"), job(A, "second")
    parking, metrics = parking_with(first, second)
    assert metrics.triggers_waiting_for_app == 2
    parking.unpark(first.key)
    parking.unpark(first.key)
    parking.unpark(job(B, "never-parked").key)
    assert metrics.triggers_waiting_for_app == 1


def test_an_update_hands_back_the_jobs_of_apps_that_can_take_them_now() -> None:
    a1, a2, b1 = job(A, "a1"), job(A, "a2"), job(B, "b1")
    parking, metrics = parking_with(a1, a2, b1)
    assert parking.update({}, set()) == []
    assert parking.update({}, {A}) == [a1.key, a2.key]
    # The caller arms them, and arming unparks: until then they stay parked.
    assert metrics.triggers_waiting_for_app == 3
    assert parking.update({A: ROUTE, B: ROUTE}, set()) == [a1.key, a2.key, b1.key]


def test_an_unparked_job_is_not_handed_back() -> None:
    a1, a2 = job(A, "a1"), job(A, "a2")
    parking, _ = parking_with(a1, a2)
    parking.unpark(a1.key)
    assert parking.update({A: ROUTE}, set()) == [a2.key]


def test_dropping_lost_partitions_forgets_only_their_jobs() -> None:
    kept, lost, other_app_lost = job(A, "kept", 1), job(A, "lost", 2), job(B, "lost-b", 3)
    parking, metrics = parking_with(kept, lost, other_app_lost)
    parking.drop_partitions({2, 3})
    assert metrics.triggers_waiting_for_app == 1
    assert parking.update({A: ROUTE, B: ROUTE}, set()) == [kept.key]
