"""The dashboard in a real headless browser, against a real 3-node cluster.

Method: Debian's chromium (scripts/test installs it), driven by Playwright for Python through
its own protocol with a fresh profile per test module; Playwright's bundled browsers are never
used. The cluster needs its admin token, which each view is opened with (`#token=`); a real
app fails the jobs named `fail-*`.
Each test opens a view as a person would, by its URL, and checks what the page shows against
what the API says, with no error in the browser's console. The operations of routes that this
branch may not serve yet (pause, resume, run now, history, dead letters) are skipped while the
node's OpenAPI document, the one it serves at /openapi.json, does not describe them.

With TOCK_SCREENSHOT_DIR set, the screenshots of the main views are also saved there (README.md
shows those saved under docs/).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, sync_playwright

from cluster.local import LocalCluster
from node.http.openapi import openapi_document
from tests.integration.node_helpers import call, wait_until
from tests.support.local_cluster import running_cluster
from tests.support.sink import Sink

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
APP = "web"
HEADERS = {"dapr-app-id": APP}
# Jobs firing every second, so that the live charts have triggers to count.
BUSY_JOBS = 6
PAGE_SIZE = 20
VIEW_S_MAX = 20.0
CHART_S_MAX = 30.0
# Rates need two polls each; a few show a line rather than a dot.
CHART_POINTS_MIN = 4
FIRE_S_MAX = 20.0
SCREENSHOTS = ("ui-cluster.png", "ui-jobs.png", "ui-job.png")


def served(path: str) -> bool:
    return path in openapi_document()["paths"]


def needs_route(path: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not served(path), reason=f"this node does not serve {path} yet")


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    sink = Sink(status_for=lambda name, n: 500 if name.startswith("fail") else 200).start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, sink: Sink) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("ui")) as cluster:
        url = cluster.nodes[0].url
        assert call(f"{url}/v1.0/apps/{APP}", "PUT", {"url": sink.url}).status == 204
        for k in range(BUSY_JOBS):
            create(cluster, f"busy-{k}", {"schedule": "@every 1s", "data": {"k": k}})
        yield cluster


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        context.set_default_timeout(VIEW_S_MAX * 1000)
        yield context
        context.close()


class Console:
    """The errors a page reported: console errors (failed loads included) and uncaught ones."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} at {message.location}")


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    page = browser.new_page()
    console = Console(page)
    yield page
    page.close()
    assert console.errors == [], console.errors


def create(cluster: LocalCluster, name: str, body: dict[str, object]) -> None:
    answer = call(f"{cluster.nodes[1].url}/v1.0/jobs/{name}", "POST", body, HEADERS)
    assert answer.status == 204, answer


def job(cluster: LocalCluster, name: str) -> dict[str, object] | None:
    answer = call(f"{cluster.nodes[2].url}/v1.0/jobs/{name}", headers=HEADERS)
    assert answer.status in (200, 404), answer
    found: dict[str, object] | None = answer.json if answer.status == 200 else None
    return found


def paused(cluster: LocalCluster, name: str) -> bool:
    found = job(cluster, name)
    assert found is not None, f"no job {name}"
    status = found["status"]
    assert isinstance(status, dict)
    return status.get("paused") is True


def open_view(page: Page, cluster: LocalCluster, query: str) -> None:
    """Open the dashboard holding the admin token, unless the query brings its own fragment."""
    fragment = "" if "#" in query else f"#token={cluster.admin_token()}"
    page.goto(f"{cluster.nodes[0].url}/ui{query}{fragment}")


def screenshot(page: Page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes().startswith(b"\x89PNG"), "not a PNG"
    wanted = os.environ.get("TOCK_SCREENSHOT_DIR")
    if wanted:
        shutil.copy(path, Path(wanted) / name)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- the cluster ---------------------------------------------------------------------------


def test_the_cluster_view_shows_every_member_and_the_ring(
    page: Page, cluster: LocalCluster
) -> None:
    open_view(page, cluster, "")
    rows = page.locator("tr[data-member]")
    rows.nth(2).wait_for()
    status = call(cluster.nodes[0].url + "/admin/cluster", headers=cluster.admin_headers()).json
    assert rows.count() == len(status["members"]) == 3
    for member in status["members"]:
        row = page.locator(f'tr[data-member="{member["id"]}"]')
        cells = row.locator("td").all_inner_texts()
        assert cells[1] == ("leader" if member["id"] == status["leader"] else "follower")
        assert cells[2] == "live"
        assert cells[3] == str(member["partitions"])
    assert page.locator("#leader").inner_text() == status["leader"]
    arcs = page.locator("#ring-donut circle[data-member]")
    assert arcs.count() == 3


def test_the_live_charts_draw_the_triggers(
    page: Page, cluster: LocalCluster, tmp_path: Path
) -> None:
    open_view(page, cluster, "?view=cluster")
    triggers = page.locator("#chart-triggers")

    def drawn() -> bool:
        points = int(triggers.get_attribute("data-points") or 0)
        return points >= CHART_POINTS_MIN and float(triggers.get_attribute("data-max") or 0) > 0

    wait_until(drawn, CHART_S_MAX, "the triggers chart drew rates above zero")
    assert triggers.locator("canvas").count() >= 1
    lateness = page.locator("#chart-lateness")
    wait_until(
        lambda: int(lateness.get_attribute("data-points") or 0) >= 1,
        CHART_S_MAX,
        "the lateness chart drew a point",
    )
    assert lateness.locator("canvas").count() >= 1
    assert "3 nodes polled" in page.locator("#live-state").inner_text()
    screenshot(page, tmp_path, "ui-cluster.png")


# -- jobs ------------------------------------------------------------------------------------


def test_the_jobs_view_shows_a_job_created_just_before(page: Page, cluster: LocalCluster) -> None:
    name = unique("fresh")
    create(cluster, name, {"schedule": "@every 1h"})
    open_view(page, cluster, f"?app={APP}&prefix=fresh-")
    row = page.locator(f'tr[data-job="{name}"]')
    row.wait_for()
    assert "@every 1h" in row.inner_text()
    assert page.locator("#jobs-filter input[name=app]").input_value() == APP


def test_the_jobs_view_pages_through_a_prefix(
    page: Page, cluster: LocalCluster, tmp_path: Path
) -> None:
    prefix = unique("paged")
    names = [f"{prefix}-{k:02d}" for k in range(PAGE_SIZE + 5)]
    for name in names:
        create(cluster, name, {"schedule": "0 30 2 * * *", "data": {"report": name}})
    open_view(page, cluster, f"?app={APP}&prefix={prefix}")
    page.locator("tr[data-job]").nth(PAGE_SIZE - 1).wait_for()
    first = page.locator("tr[data-job]").evaluate_all("rows => rows.map(r => r.dataset.job)")
    assert first == names[:PAGE_SIZE]
    screenshot(page, tmp_path, "ui-jobs.png")
    page.locator("#next-page").click()
    page.locator(f'tr[data-job="{names[-1]}"]').wait_for()
    second = page.locator("tr[data-job]").evaluate_all("rows => rows.map(r => r.dataset.job)")
    assert second == names[PAGE_SIZE:]
    assert page.locator("#next-page").is_disabled()


def test_a_jobs_page_shows_its_definition_status_and_next_occurrences(
    page: Page, cluster: LocalCluster, tmp_path: Path
) -> None:
    name = unique("nightly")
    create(cluster, name, {"schedule": "0 30 2 * * *", "data": {"target": "archive"}})
    open_view(page, cluster, f"?view=job&app={APP}&name={name}")
    times = page.locator("#upcoming li")
    times.nth(9).wait_for()
    assert times.count() == 10
    upcoming = call(f"{cluster.nodes[0].url}/v1.0/jobs/{name}/next?count=10", headers=HEADERS)
    assert [t.split(" ")[0] for t in times.all_inner_texts()] == upcoming.json["next"]
    definition = page.locator("#definition pre").inner_text()
    assert '"schedule": "0 30 2 * * *"' in definition and '"target": "archive"' in definition
    screenshot(page, tmp_path, "ui-job.png")


def test_delete_asks_first_and_cancel_keeps_the_job(page: Page, cluster: LocalCluster) -> None:
    name = unique("doomed")
    create(cluster, name, {"schedule": "@every 1h"})
    open_view(page, cluster, f"?view=job&app={APP}&name={name}")
    page.locator("#delete").click()
    page.locator("#confirm-cancel").click()
    assert page.locator("#confirm").is_hidden()
    assert job(cluster, name) is not None
    page.locator("#delete").click()
    page.locator("#confirm-ok").click()
    page.locator("#jobs").wait_for()
    assert job(cluster, name) is None
    assert page.url.endswith(f"/ui?view=jobs&app={APP}&namespace=default")


# -- the token ------------------------------------------------------------------------------


def test_a_token_in_the_fragment_is_kept_for_the_tab_and_sent_in_headers_only(
    page: Page, cluster: LocalCluster
) -> None:
    # The real admin token: a wrong one would be refused, and the page report the 401s.
    token = cluster.admin_token()
    sent: list[tuple[str, dict[str, str]]] = []
    page.on("request", lambda request: sent.append((request.url, request.headers)))
    open_view(page, cluster, f"?app={APP}#token={token}")
    page.locator("#jobs").wait_for()
    page.locator("tr[data-job]").first.wait_for()
    wait_until(
        lambda: any("/admin/stats" in url for url, _ in sent), VIEW_S_MAX, "the charts polled"
    )
    assert page.evaluate("location.hash") == ""
    assert page.evaluate("sessionStorage.getItem('tock.token')") == token
    assert not any(token in url for url, _ in sent)
    bearer = f"Bearer {token}"
    calls = {url.split("?")[0].rsplit("/", 1)[-1]: headers for url, headers in sent}
    assert calls["jobs"].get("authorization") == bearer
    assert calls["stats"].get("authorization") == bearer
    assert "authorization" not in calls["openapi.json"]
    assert "authorization" not in calls["app.js"]


# -- operations of the job-operations routes ---------------------------------------------------


@needs_route("/v1.0/jobs/{name}/pause")
def test_pause_and_resume_through_the_buttons_are_seen_by_the_api(
    page: Page, cluster: LocalCluster
) -> None:
    name = unique("pausable")
    create(cluster, name, {"schedule": "@every 1h"})
    open_view(page, cluster, f"?view=job&app={APP}&name={name}")
    page.locator("#pause").click()
    wait_until(lambda: paused(cluster, name), VIEW_S_MAX, "the API shows the job paused")
    page.locator("#resume").click()
    wait_until(lambda: not paused(cluster, name), VIEW_S_MAX, "the API shows the job resumed")


@needs_route("/v1.0/jobs/{name}/run")
def test_run_now_through_the_button_sends_one_manual_trigger(
    page: Page, cluster: LocalCluster, sink: Sink
) -> None:
    name = unique("manual")
    create(cluster, name, {"schedule": "@every 24h"})
    open_view(page, cluster, f"?view=job&app={APP}&name={name}")
    page.locator("#run").click()
    (delivered,) = sink.wait_for(name, 1, FIRE_S_MAX)
    assert delivered.headers.get("tock-manual") == "true"


@needs_route("/v1.0/jobs/{name}/history")
def test_a_jobs_page_shows_its_history(page: Page, cluster: LocalCluster, sink: Sink) -> None:
    name = unique("historic")
    # No repeats: a job that ended would be gone, its page a 404, before the page opens.
    create(cluster, name, {"schedule": "@every 1s"})
    sink.wait_for(name, 2, FIRE_S_MAX)
    open_view(page, cluster, f"?view=job&app={APP}&name={name}")
    page.locator("#history tbody tr").nth(1).wait_for()
    assert "success" in page.locator("#history").inner_text()


@needs_route("/v1.0/deadletters")
def test_dead_letters_are_listed_redriven_and_deleted(
    page: Page, cluster: LocalCluster, sink: Sink
) -> None:
    name = unique("fail-dead")
    create(cluster, name, {"dueTime": "1s", "failurePolicy": {"drop": {}}})
    sink.wait_for(name, 1, FIRE_S_MAX)

    def letters() -> list[dict[str, object]]:
        answer = call(f"{cluster.nodes[0].url}/v1.0/deadletters?prefix={name}", headers=HEADERS)
        found: list[dict[str, object]] = answer.json["deadLetters"]
        return found

    wait_until(lambda: len(letters()) == 1, FIRE_S_MAX, "the dead letter is recorded")
    open_view(page, cluster, f"?view=deadletters&app={APP}&prefix={name}")
    row = page.locator("tr[data-deadletter]")
    row.wait_for()
    row.locator("button.redrive").click()
    page.locator("#confirm-ok").click()
    sink.wait_for(name, 2, FIRE_S_MAX)
    assert len(sink.calls_for(name)) == 2
    row.locator("button.danger").click()
    page.locator("#confirm-ok").click()
    wait_until(lambda: letters() == [], VIEW_S_MAX, "the dead letter is forgotten")
    wait_until(
        lambda: page.locator("tr[data-deadletter]").count() == 0, VIEW_S_MAX, "its row is gone"
    )
