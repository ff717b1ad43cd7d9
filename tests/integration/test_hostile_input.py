"""Hostile requests against a real 3-node cluster: each gets a clear answer (a 4xx naming what is
wrong, never a 500) and hurts nothing else.

After each request the test asks the canary (healthy_app.py): another app's jobs, spread over
every node's partitions, must go on firing from every node, and every node must stay ready. The
requests are those that once stopped a cluster or answered 500: times and durations whose
arithmetic overflows, strings that cannot be encoded, integers too long to convert, header bytes
that are not UTF-8, periods too short to serve, answers too large to build, quotas, and one
delete over thousands of jobs.

One cluster serves the module (the quota tests start a second one with small quotas); each test
acts for apps of its own, and checks every variant of its case before failing, so one run names
everything still wrong.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote

import pytest

from node.client.client import TockClient
from tests.integration.healthy_app import HealthyApp, names_on_every_node, now_ms
from tests.integration.node_helpers import Answer, App, Rig, call, running_rig
from tests.integration.raw_http import raw_call

NODES = (1, 2, 3)
MALFORMED = "failed deserializing http body"
# Python refuses to convert decimal strings longer than 4,300 digits to an int.
DIGITS = "9" * 5000
NOT_UTF8 = b"\xff\xfe"
# A job's data may be 1 MiB; these jobs come close to it.
NEAR_MAX_DATA_CHARS = 1024 * 1024 - 64
BIG_JOBS = 30
# A list answer over BIG_JOBS jobs of ~1 MiB must stop early and stay this small.
LIST_ANSWER_BYTES_MAX = 8 * 1024 * 1024
# Jobs removed by one delete-by-prefix, created CREATE_CONCURRENCY at a time.
BULK_JOBS = 3000
CREATE_CONCURRENCY = 48
# The small quotas of the second cluster.
JOBS_MAX_PER_APP = 5
DATA_BYTES_MAX_PER_APP = 10_000
QUOTA_DATA_CHARS = 4000
WAIT_S = 15.0


@dataclass(frozen=True)
class Expect:
    """The answers a request may get: one of `statuses`; for an error, a message naming one of
    `mentions` (case-insensitive) and, when given, the error code `code`."""

    statuses: tuple[int, ...]
    mentions: tuple[str, ...] = ()
    code: str | None = None


def refused(*mentions: str) -> Expect:
    return Expect((400,), mentions)


def wrong_answer(label: str, answer: Answer, expect: Expect) -> list[str]:
    """What is wrong with `answer` (empty when nothing is), each line starting with `label`."""
    shown = f"{label}: {answer.status} {answer.body[:300]!r}"
    if answer.status not in expect.statuses:
        return [f"{shown}; expected {' or '.join(map(str, expect.statuses))}"]
    if answer.status < 400:
        return []
    try:
        error = answer.json
        message, code = str(error["message"]).lower(), error["errorCode"]
    except (ValueError, KeyError, TypeError):
        return [f"{shown}; expected a JSON error body"]
    if expect.mentions and not any(m.lower() in message for m in expect.mentions):
        return [f"{shown}; the message names none of {expect.mentions}"]
    if expect.code is not None and code != expect.code:
        return [f"{shown}; expected the error code {expect.code}"]
    return []


def assert_answers_and_health(
    healthy: HealthyApp,
    since_ms: int,
    answers: dict[str, tuple[Answer, Expect]],
    found: tuple[str, ...] = (),
) -> None:
    """Every answer as expected, nothing else `found` wrong, and the cluster as healthy as
    before `since_ms`; otherwise fail with everything wrong at once."""
    wrong = [
        *found,
        *(line for label, got in answers.items() for line in wrong_answer(label, *got)),
    ]
    wrong += healthy.problems(since_ms)
    assert not wrong, "\n".join(wrong)


def create(app: App, name: str, body: object, node: int = 1) -> Answer:
    return app.call(node, "POST", f"/v1.0/jobs/{name}", body)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with running_rig(tmp_path_factory.mktemp("hostile")) as rig:
        yield rig


@pytest.fixture(scope="module")
def healthy(rig: Rig) -> HealthyApp:
    return HealthyApp.start(rig)


@pytest.fixture
def app(rig: Rig) -> Iterator[App]:
    """A fresh app; whatever jobs it still has at the end are deleted, so that a job wrongly
    accepted by one test does not go on hurting the tests after it."""
    app = rig.app()
    yield app
    app.call(1, "DELETE", "/v1.0/jobs?prefix=")


def test_a_retry_interval_past_any_clock_is_refused(healthy: HealthyApp, app: App) -> None:
    since = now_ms()
    answers = {
        f"maxRetries {retries}": (
            create(
                app,
                app.name(f"forever-{retries}"),
                {"dueTime": "1s", "failurePolicy": {"constant": constant}},
            ),
            refused("interval"),
        )
        for retries, constant in (
            (None, {"interval": "18446744073709551s"}),
            (3, {"interval": "18446744073709551s", "maxRetries": 3}),
        )
    }
    assert_answers_and_health(healthy, since, answers)


@pytest.mark.parametrize("interval", ["18446744073709551s", "2562047h", "87600h"])
def test_a_failed_delivery_with_a_long_retry_interval_hurts_nothing(
    rig: Rig, healthy: HealthyApp, app: App, interval: str
) -> None:
    """An interval of 585 million, 292 or 10 years may be accepted or refused; if accepted, a
    failed delivery schedules a retry that far ahead, and the job must stay readable and the
    node healthy (a retry time past 2^64 ms once made every snapshot fail)."""
    policy = {"constant": {"interval": interval, "maxRetries": 3}}
    names = [names[0] for names in names_on_every_node(app, "retry-later", 1).values()]
    for name in names:
        rig.script.fail(name, times=1_000_000)
    answers = {
        name: create(app, name, {"dueTime": "0s", "failurePolicy": policy}) for name in names
    }
    found = [
        line
        for name, answer in answers.items()
        for line in wrong_answer(name, answer, Expect((204, 400), ("interval",)))
    ]
    accepted = [name for name, answer in answers.items() if answer.status == 204]
    for name in accepted:
        if not rig.sink.wait_for(name, 1, WAIT_S):
            found.append(f"{name}: never delivered")
    since = now_ms()
    found += healthy.problems(since)
    for node in NODES:
        status = call(rig.url(node) + "/admin/cluster", headers=rig.cluster.admin_headers())
        if status.status != 200:
            found.append(f"n{node} /admin/cluster: {status.status} {status.body[:200]!r}")
        for name in accepted:
            job = app.get(name, node)
            if job.status != 200:
                found.append(f"n{node} GET {name}: {job.status} {job.body[:200]!r}")
    assert not found, "\n".join(found)


def test_a_lone_surrogate_is_refused(healthy: HealthyApp, app: App) -> None:
    """JSON may spell a lone surrogate (\\ud800) that no UTF-8 encoder accepts."""
    since = now_ms()
    bodies: dict[str, tuple[Expect, bytes]] = {
        "data": (refused("data"), b'{"dueTime": "1h", "data": "\\ud800"}'),
        "data key": (refused("data"), b'{"dueTime": "1h", "data": {"\\udfff": 1}}'),
        "schedule": (refused("schedule", "@every"), b'{"schedule": "@every 1h\\ud800"}'),
        "dueTime": (refused("due"), b'{"dueTime": "1h\\ud800"}'),
        "ttl": (refused("ttl"), b'{"dueTime": "1h", "ttl": "\\ud800"}'),
    }
    answers = {
        label: (create(app, app.name("surrogate"), body), expect)
        for label, (expect, body) in bodies.items()
    }
    url = b'{"url": "http://127.0.0.1:9/\\ud800"}'
    register = call(f"{app.rig.url(2)}/v1.0/apps/{app.id}", "PUT", url)
    answers["app url"] = (register, refused("url"))
    assert_answers_and_health(healthy, since, answers)


def test_integers_too_long_to_convert_are_refused(healthy: HealthyApp, app: App) -> None:
    """A number too long to convert fails in the JSON parser itself, which cannot know the
    field: a malformed-body answer is a clear enough answer then."""
    since = now_ms()
    bodies: dict[str, tuple[bytes, Expect]] = {
        "repeats number": (
            b'{"schedule": "@every 1h", "repeats": %s}' % DIGITS.encode(),
            refused("repeats", MALFORMED),
        ),
        "repeats string": (
            b'{"schedule": "@every 1h", "repeats": "%s"}' % DIGITS.encode(),
            refused("repeats"),
        ),
        "maxRetries number": (
            b'{"dueTime": "1h", "failurePolicy": {"constant": {"interval": "1s", '
            b'"maxRetries": %s}}}' % DIGITS.encode(),
            refused("maxRetries", MALFORMED),
        ),
        "maxRetries string": (
            b'{"dueTime": "1h", "failurePolicy": {"constant": {"interval": "1s", '
            b'"maxRetries": "%s"}}}' % DIGITS.encode(),
            refused("maxRetries"),
        ),
        "interval": (
            b'{"dueTime": "1h", "failurePolicy": {"constant": {"interval": "%ss"}}}'
            % DIGITS.encode(),
            refused("interval"),
        ),
    }
    answers = {
        label: (create(app, app.name("digits"), body), expect)
        for label, (body, expect) in bodies.items()
    }
    answers["limit"] = (app.call(2, "GET", f"/v1.0/jobs?limit={DIGITS}"), refused("limit"))
    assert_answers_and_health(healthy, since, answers)


def test_header_bytes_that_are_not_utf8_are_refused(
    rig: Rig, healthy: HealthyApp, app: App
) -> None:
    since = now_ms()
    json_type = {"content-type": b"application/json"}
    requests = [
        ("POST", f"/v1.0/jobs/{app.name('bytes')}", b'{"dueTime": "1h"}'),
        ("GET", f"/v1.0/jobs/{app.name('bytes')}", None),
        ("GET", "/v1.0/jobs", None),
        ("DELETE", "/v1.0/jobs?prefix=", None),
        ("DELETE", f"/v1.0/jobs/{app.name('bytes')}", None),
    ]
    answers: dict[str, tuple[Answer, Expect]] = {}
    for index, (method, path, body) in enumerate(requests):
        node = NODES[index % len(NODES)]
        for header in ("dapr-app-id", "dapr-namespace"):
            headers = {"dapr-app-id": app.id.encode(), **json_type, header: NOT_UTF8}
            answer = raw_call(rig.url(node), method, path, headers, body)
            answers[f"{method} {path} {header}"] = (answer, refused(header))
    bad_namespace = {**json_type, "dapr-namespace": NOT_UTF8}
    register = raw_call(
        rig.url(3), "PUT", f"/v1.0/apps/{app.id}", bad_namespace, b'{"url": "http://127.0.0.1:9"}'
    )
    answers["PUT /v1.0/apps dapr-namespace"] = (register, refused("dapr-namespace"))
    assert_answers_and_health(healthy, since, answers)


def test_times_before_1970_are_refused_and_the_app_stays_readable(
    healthy: HealthyApp, app: App
) -> None:
    """Times before year 1 once made GET and list fail for the whole app; the last day of
    year 9999 may be accepted or refused, but never makes a read fail. A one-shot job wrongly
    accepted with a past due time may already have fired and be gone: a 404 for it is fine."""
    since = now_ms()
    bodies: dict[str, tuple[dict[str, object], Expect]] = {
        "negative-due": ({"dueTime": "-2562047h"}, refused("due")),
        "before-year-one": ({"dueTime": "-20000000h"}, refused("due")),
        "year-zero": ({"dueTime": "0000-01-01T00:00:00Z"}, refused("due")),
        "year-one": ({"dueTime": "0001-01-01T00:00:00Z"}, refused("due")),
        "just-before-1970": ({"dueTime": "1969-12-31T23:59:59Z"}, refused("due")),
        "negative-ttl": ({"dueTime": "1h", "ttl": "-2562047h"}, refused("ttl")),
        "year-9999": (
            {"dueTime": "9999-12-31T23:59:59Z", "schedule": "@every 1s"},
            Expect((204, 400), ("due",)),
        ),
    }
    answers = {
        stem: (create(app, app.name(stem), body, node=NODES[k % 3]), expect)
        for k, (stem, (body, expect)) in enumerate(bodies.items())
    }
    created = {app.name(stem) for stem, (answer, _) in answers.items() if answer.status == 204}
    # The job due in year 9999, if accepted, is the one sure to be there still.
    lasting = created & {app.name("year-9999")}
    found: list[str] = []
    for node in NODES:
        listed = app.call(node, "GET", "/v1.0/jobs")
        answers[f"n{node} list"] = (listed, Expect((200,)))
        if listed.status == 200:
            names = {job["name"] for job in listed.json["jobs"]}
            if not lasting <= names <= created:
                found.append(f"n{node} lists {sorted(names)}; created {sorted(created)}")
        for stem in bodies:
            name = app.name(stem)
            statuses = (200,) if name in lasting else (200, 404) if name in created else (404,)
            answers[f"n{node} GET {stem}"] = (app.get(name, node), Expect(statuses))
    assert_answers_and_health(healthy, since, answers, tuple(found))


def websocket_upgrade(namespace: bytes) -> dict[str, bytes]:
    """The headers of a WebSocket handshake acting for `namespace`."""
    return {
        "connection": b"Upgrade",
        "upgrade": b"websocket",
        "sec-websocket-version": b"13",
        "sec-websocket-key": base64.b64encode(os.urandom(16)),
        "dapr-namespace": namespace,
    }


async def watch_gets_a_trigger(rig: Rig, app: App, watched: int, owner: int, name: str) -> None:
    """A watcher on node `watched` gets the trigger of job `name`, which node `owner` fires."""
    async with (
        TockClient(rig.url(watched), app_id=app.id) as watching,
        TockClient(rig.url(owner), app_id=app.id) as creating,
        watching.watch() as stream,
    ):
        await creating.create(name, due_time="1s")
        batch = await asyncio.wait_for(anext(stream), WAIT_S)
        assert [trigger.name for trigger in batch] == [name]
        await stream.ack([(trigger.id, "SUCCESS") for trigger in batch])


def test_a_watch_with_a_namespace_not_utf8_is_refused_and_watching_still_works(
    rig: Rig, healthy: HealthyApp, app: App
) -> None:
    """Such a request once killed the node's watch announcer for good: from then on, no owner
    elsewhere learnt of the node's watchers. So the watcher opened afterwards on the same node
    must get the trigger of a job another node owns."""
    watched = 2
    since = now_ms()
    path = f"/v1.0/apps/{app.id}/watch"
    answer = raw_call(rig.url(watched), "GET", path, websocket_upgrade(NOT_UTF8))
    owned = names_on_every_node(app, "watched", 1)
    owner, (name,) = next((k, names) for k, names in enumerate(owned.values(), 1) if k != watched)
    found: list[str] = []
    try:
        watching = watch_gets_a_trigger(rig, app, watched, owner, name)
        asyncio.run(asyncio.wait_for(watching, 2 * WAIT_S))
    except (AssertionError, TimeoutError) as error:
        found.append(f"a watcher on n{watched} got no trigger of a job n{owner} owns: {error!r}")
    watch = {"watch": (answer, refused("dapr-namespace"))}
    assert_answers_and_health(healthy, since, watch, tuple(found))


def test_periods_under_100ms_are_refused_and_100ms_is_served(
    rig: Rig, healthy: HealthyApp, app: App
) -> None:
    since = now_ms()
    bodies: dict[str, tuple[dict[str, object], Expect]] = {
        "every-1ms": ({"schedule": "@every 1ms"}, refused("schedule", "@every")),
        "every-99ms": ({"schedule": "@every 99ms"}, refused("schedule", "@every")),
        "retry-0s": (
            {"dueTime": "1h", "failurePolicy": {"constant": {"interval": "0s"}}},
            refused("interval"),
        ),
        "retry-50ms": (
            {"dueTime": "1h", "failurePolicy": {"constant": {"interval": "50ms"}}},
            refused("interval"),
        ),
        "every-100ms": ({"schedule": "@every 100ms", "repeats": 10}, Expect((204,))),
    }
    answers = {
        stem: (create(app, app.name(stem), body), expect) for stem, (body, expect) in bodies.items()
    }
    assert_answers_and_health(healthy, since, answers)
    served = rig.sink.wait_for(app.name("every-100ms"), 10, WAIT_S)
    assert len(served) >= 10, served


def test_a_list_of_large_jobs_is_bounded_in_bytes(rig: Rig, healthy: HealthyApp, app: App) -> None:
    """A page of 1,000 jobs of 1 MiB each would be a gigabyte of JSON built on the event loop:
    the node must cut the page short and hand out a cursor instead, and keep its lease."""
    data = "d" * NEAR_MAX_DATA_CHARS
    names = [app.name(f"big-{k:02d}") for k in range(BIG_JOBS)]

    def create_big(index: int) -> Answer:
        body = {"dueTime": "1h", "data": data}
        return create(app, names[index], body, node=NODES[index % len(NODES)])

    with ThreadPoolExecutor(len(NODES)) as pool:
        created = list(pool.map(create_big, range(BIG_JOBS)))
    assert [answer.status for answer in created] == [204] * BIG_JOBS, created[0]
    since = now_ms()
    first = app.call(1, "GET", "/v1.0/jobs?limit=1000")
    found: list[str] = []
    if first.status == 200:
        page = first.json
        if len(first.body) > LIST_ANSWER_BYTES_MAX or page["nextCursor"] is None:
            found.append(
                f"the first page holds {len(page['jobs'])} jobs in {len(first.body)} bytes"
                f" (at most {LIST_ANSWER_BYTES_MAX}), nextCursor {page['nextCursor']!r}"
            )
        listed = [job["name"] for job in page["jobs"]]
        cursor = page["nextCursor"]
        while cursor is not None and len(listed) <= BIG_JOBS:
            more = app.call(2, "GET", f"/v1.0/jobs?limit=1000&cursor={quote(cursor)}")
            assert more.status == 200, more.body[:300]
            assert len(more.body) <= LIST_ANSWER_BYTES_MAX, len(more.body)
            listed += [job["name"] for job in more.json["jobs"]]
            cursor = more.json["nextCursor"]
        if listed != names:
            found.append(f"the pages list {len(listed)} jobs, not the {BIG_JOBS} created")
    first_page = {"first page": (first, Expect((200,)))}
    assert_answers_and_health(healthy, since, first_page, tuple(found))


def test_the_sixth_job_of_an_app_is_over_a_quota_of_five(
    quota_rig: Rig, quota_healthy: HealthyApp
) -> None:
    capped, other = quota_rig.app(), quota_rig.app()
    since = now_ms()
    answers = {
        f"job {k}": (create(capped, capped.name(f"job-{k}"), {"dueTime": "1h"}), Expect((204,)))
        for k in range(1, JOBS_MAX_PER_APP + 1)
    }
    answers["one too many"] = (
        create(capped, capped.name("job-6"), {"dueTime": "1h"}, node=2),
        Expect((429,), code="ERR_QUOTA_EXCEEDED"),
    )
    answers["overwrite at the quota"] = (
        create(capped, capped.name("job-1"), {"dueTime": "2h", "overwrite": True}, node=3),
        Expect((204,)),
    )
    answers["another app"] = (create(other, other.name("job"), {"dueTime": "1h"}), Expect((204,)))
    answers["delete one"] = (
        capped.call(1, "DELETE", f"/v1.0/jobs/{capped.name('job-2')}"),
        Expect((204,)),
    )
    answers["create after the delete"] = (
        create(capped, capped.name("job-7"), {"dueTime": "1h"}, node=2),
        Expect((204,)),
    )
    assert_answers_and_health(quota_healthy, since, answers)
    assert sorted(capped.names(3)) == sorted(capped.name(f"job-{k}") for k in (1, 3, 4, 5, 7))


def test_data_over_the_quota_of_an_app_is_refused(
    quota_rig: Rig, quota_healthy: HealthyApp
) -> None:
    capped = quota_rig.app()
    data = "q" * QUOTA_DATA_CHARS
    since = now_ms()
    answers = {
        f"data {k}": (
            create(capped, capped.name(f"data-{k}"), {"dueTime": "1h", "data": data}),
            Expect((204,)),
        )
        for k in (1, 2)
    }
    answers["one too many"] = (
        create(capped, capped.name("data-3"), {"dueTime": "1h", "data": data}, node=3),
        Expect((429,), code="ERR_QUOTA_EXCEEDED"),
    )
    answers["no data"] = (create(capped, capped.name("bare"), {"dueTime": "1h"}), Expect((204,)))
    assert_answers_and_health(quota_healthy, since, answers)


@pytest.fixture(scope="module")
def quota_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    quotas = (
        "--jobs-max-per-app",
        str(JOBS_MAX_PER_APP),
        "--data-bytes-max-per-app",
        str(DATA_BYTES_MAX_PER_APP),
    )
    with running_rig(tmp_path_factory.mktemp("quotas"), node_args=quotas) as rig:
        yield rig


@pytest.fixture(scope="module")
def quota_healthy(quota_rig: Rig) -> HealthyApp:
    # One job per node: the canary itself must stay under the quota of five jobs per app.
    return HealthyApp.start(quota_rig, jobs_per_node=1)


async def create_many(rig: Rig, app: App, names: list[str]) -> None:
    """Create `names` (due in an hour), CREATE_CONCURRENCY at a time, over every node."""
    slots = asyncio.Semaphore(CREATE_CONCURRENCY)
    clients = [TockClient(rig.url(node), app_id=app.id) for node in NODES]

    async def create_one(index: int) -> None:
        async with slots:
            await clients[index % len(clients)].create(names[index], due_time="1h")

    try:
        await asyncio.gather(*(create_one(index) for index in range(len(names))))
    finally:
        for client in clients:
            await client.close()


def test_a_delete_by_prefix_over_thousands_of_jobs_stops_nothing(
    rig: Rig, healthy: HealthyApp, app: App
) -> None:
    names = [app.name(f"bulk-{k:05d}") for k in range(BULK_JOBS)]
    asyncio.run(asyncio.wait_for(create_many(rig, app, names), 60))
    kept = app.name("kept")
    assert create(app, kept, {"dueTime": "1h"}).status == 204
    since = now_ms()
    deleted = app.call(2, "DELETE", "/v1.0/jobs?prefix=bulk-")
    answers = {"delete": (deleted, Expect((200,)))}
    found = []
    if deleted.status == 200 and deleted.json != {"deleted": BULK_JOBS}:
        found.append(f"the delete answered {deleted.json}, not {BULK_JOBS} deleted")
    assert_answers_and_health(healthy, since, answers, tuple(found))
    assert all(app.names(node) == [kept] for node in NODES)


# Last in the file: on a cluster without the fix it stops the trigger engine of every node, and
# the tests after it would fail for its sake rather than their own.
def test_times_before_1970_with_a_zoned_cron_are_refused(healthy: HealthyApp, app: App) -> None:
    """Once accepted, these jobs overflowed the next-time arithmetic when they came due and
    killed the trigger engine of every node that owned one. Every node owns two here."""
    since = now_ms()
    answers: dict[str, tuple[Answer, Expect]] = {}
    for node_id, names in names_on_every_node(app, "year-one", 2).items():
        for name, misfire in zip(names, ("skip", None), strict=True):
            body = {
                "dueTime": "0001-01-01T00:00:00Z",
                "schedule": "CRON_TZ=America/New_York 0 * * * * *",
                "misfirePolicy": misfire,
            }
            answers[f"{node_id} misfire {misfire}"] = (create(app, name, body), refused("due"))
    assert_answers_and_health(healthy, since, answers)
