"""Schemathesis against a real 3-node cluster, from the node's own /openapi.json: every route,
requests generated to fit the document and to break it. No answer may be a 5xx, every 4xx must
be the JSON error shape, and a rejected request must change nothing: the state digest
(GET /admin/digest, after a barrier read) is the same after it as before.

The digest hashes the whole replicated state, heartbeats and trigger progress included, so the
cluster is quiesced first (no heartbeats, no firing): from then on only the fuzzed requests
write, and an accepted one moves the baseline the next request is compared with.

TOCK_FUZZ_EXAMPLES sets the examples per route and TOCK_FUZZ_S_MAX the time they may take (a
longer run also needs pytest's `--timeout` raised); TOCK_FUZZ_SEED replays a run.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.core.result import Ok

from cluster.local import LocalCluster
from tests.integration.node_helpers import call, wait_until
from tests.support.local_cluster import running_cluster

# Examples per route, about half of them fitting the document and half breaking it. The jobs and
# apps routes are described under both API prefixes, so their handlers get twice as many.
EXAMPLES_PER_ROUTE = int(os.environ.get("TOCK_FUZZ_EXAMPLES", "100"))
# Each route gets an equal share of this; past its share a route stops generating, so the test
# stays bounded in time however slow the machine (the request counts are printed).
FUZZ_S_MAX = float(os.environ.get("TOCK_FUZZ_S_MAX", "60"))
REQUEST_TIMEOUT_S = 10.0
QUIET_TIMEOUT_S = 20.0
Operation = APIOperation[Any, Any, Any, Any]
AnyCase = Case[Any]
# Routes that change the membership or stop a node do so when they succeed: fuzzing them would
# take the cluster under test apart. Their input checks have tests of their own.
EXCLUDED = {
    ("POST", "/admin/members"),
    ("DELETE", "/admin/members/{id}"),
    ("POST", "/admin/quiesce"),
}

# The routes that act on one existing job: each of their cases gets its job created first.
JOB_OPERATIONS = ("/pause", "/resume", "/run", "/history")
SCOPE_HEADERS = ("dapr-app-id", "dapr-namespace")

# The internal route takes msgpack: the generated binary bodies go as they are.
schemathesis.serializer.alias("application/msgpack", "application/octet-stream")
# An import takes NDJSON lines: the generated text goes as it is.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")


class OutOfTime(Exception):
    """A route's share of time is used up: raised from its next example, it stops hypothesis
    generating more (generating the rest without sending them would take the time anyway)."""


@dataclass
class Findings:
    """What the run saw: requests sent per route, and every defect with the request that
    showed it."""

    sent: dict[str, Counter[int]] = field(default_factory=dict)
    unsendable: int = 0
    # Requests after which the digest changed: accepted writes (or defects).
    writes: int = 0
    defects: list[str] = field(default_factory=list)

    def count(self, route: str, status: int) -> None:
        self.sent.setdefault(route, Counter())[status] += 1

    def report(self) -> str:
        total = sum(sum(statuses.values()) for statuses in self.sent.values())
        lines = [
            f"{total} requests over {len(self.sent)} routes, {self.writes} changed the state, "
            f"{self.unsendable} unsendable"
        ]
        for route, statuses in sorted(self.sent.items()):
            answers = " ".join(f"{status}x{n}" for status, n in sorted(statuses.items()))
            lines.append(f"  {sum(statuses.values()):5d} {route}: {answers}")
        return "\n".join(lines)


class Fuzzer:
    def __init__(self, cluster: LocalCluster, session: requests.Session) -> None:
        self.url = cluster.nodes[0].url
        self._admin = cluster.admin_headers()
        self._session = session
        self.findings = Findings()
        self._digest = self.digest()

    def digest(self) -> str:
        answer = call(f"{self.url}/admin/digest", headers=self._admin)
        assert answer.status == 200, answer
        digest: str = answer.json["digest"]
        return digest

    def run(self, operation: Operation, examples: int, seed: int, stop_at: float) -> None:
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )
        checked = 0

        @hypothesis.seed(seed)
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            # Every defect is collected and reported at the end rather than shrunk: one run
            # lists them all.
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            # The first failure, OutOfTime, ends the route's run.
            report_multiple_bugs=False,
        )
        @given(case=strategy)
        def one(case: AnyCase) -> None:
            # The first example always goes: a route whose strategy is slow to build (the job
            # body's) still gets called when its share of time ran out before it was ready.
            nonlocal checked
            if time.monotonic() >= stop_at and checked > 0:
                raise OutOfTime
            checked += 1
            self.check(case)

        with contextlib.suppress(OutOfTime):
            one()

    def check(self, case: AnyCase) -> None:
        route = f"{case.method.upper()} {case.path}"
        self._prepare(case)
        try:
            response = case.call(
                base_url=self.url, session=self._session, timeout=REQUEST_TIMEOUT_S
            )
        except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL, ValueError):
            # The client refused to send it (a header no HTTP library would put on the wire).
            self.findings.unsendable += 1
            return
        except requests.RequestException as error:
            self._defect(case, f"got no answer ({error!r})")
            return
        status = response.status_code
        self.findings.count(route, status)
        if status >= 500:
            self._defect(case, f"answered {status} {response.text[:200]!r}")
        if 400 <= status < 500:
            body = _json_or_none(response)
            if not (isinstance(body, dict) and {"errorCode", "message"} <= body.keys()):
                self._defect(case, f"answered {status} without the error shape: {response.text!r}")
        digest = self.digest()
        if digest != self._digest:
            self.findings.writes += 1
            if 400 <= status < 500:
                self._defect(case, f"answered {status} but changed the state")
        self._digest = digest

    def _prepare(self, case: AnyCase) -> None:
        """Create the job that a job operation's case names (in its scope), so that pause,
        resume, run and history act on a job rather than answer 404 every time. A name or scope
        that cannot be created stays absent; the baseline digest follows the creation."""
        name = (case.path_parameters or {}).get("name")
        if not (case.path.endswith(JOB_OPERATIONS) and isinstance(name, str)):
            return
        scope = {
            key: value
            for key, value in (case.headers or {}).items()
            if key.lower() in SCOPE_HEADERS and isinstance(value, str)
        }
        try:
            # Schemathesis keeps path parameters percent-encoded, as they go in the URL.
            self._session.post(
                f"{self.url}/v1.0/jobs/{name}",
                json={"schedule": "@every 1h"},
                headers=scope,
                timeout=REQUEST_TIMEOUT_S,
            )
        except (requests.RequestException, ValueError):
            return
        self._digest = self.digest()

    def _defect(self, case: AnyCase, what: str) -> None:
        self.findings.defects.append(f"{case.method.upper()} {case.path} {what}: {_repro(case)}")


def _repro(case: AnyCase) -> str:
    try:
        return case.as_curl_command()
    except Exception as error:
        return f"{case!r} (no curl: {error!r})"


def _json_or_none(response: schemathesis.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    with running_cluster(data_dir) as running:
        yield running


def quiesce(cluster: LocalCluster) -> None:
    """Stop every node's heartbeats and firing, and wait until the state holds still."""
    admin = cluster.admin_headers()
    for node in cluster.nodes:
        answer = call(f"{node.url}/admin/quiesce", "POST", headers=admin)
        assert answer.status == 204, answer
    url = cluster.nodes[0].url
    seen: list[str] = []

    def still() -> bool:
        seen.append(call(f"{url}/admin/digest", headers=admin).json["digest"])
        return len(seen) >= 3 and len(set(seen[-3:])) == 1

    wait_until(still, QUIET_TIMEOUT_S, "the quiesced cluster's state to hold still")


def test_no_input_answers_5xx_or_changes_state_when_rejected(cluster: LocalCluster) -> None:
    seed = int(os.environ.get("TOCK_FUZZ_SEED", str(random.randrange(2**32))))
    print(f"fuzz seed {seed} (TOCK_FUZZ_SEED={seed} replays it), {EXAMPLES_PER_ROUTE} per route")
    quiesce(cluster)
    url = cluster.nodes[0].url
    document = call(f"{url}/openapi.json")
    assert document.status == 200, document
    # Loaded from the fetched text, since from_url leaves out the route it was loaded from.
    schema = schemathesis.openapi.from_dict(document.json)
    operations: list[Operation] = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the document has a bad operation: {result!r}"
        operation = result.ok()
        if (operation.method.upper(), operation.path) not in EXCLUDED:
            operations.append(operation)
    print(f"{len(operations)} routes fuzzed")
    described = {(op.method.upper(), op.path) for op in operations} | EXCLUDED
    assert ("GET", "/admin/digest") in described and len(described) >= 25, described
    share_s = FUZZ_S_MAX / len(operations)
    with requests.Session() as session:
        # The admin token on every request, so that the admin routes are fuzzed past the
        # check; without it they all answer 401 (tests/integration/test_access.py).
        session.headers.update(cluster.admin_headers())
        fuzzer = Fuzzer(cluster, session)
        for index, operation in enumerate(operations):
            # A seed per route: the twin routes of the two prefixes get different requests.
            fuzzer.run(operation, EXAMPLES_PER_ROUTE, seed + index, time.monotonic() + share_s)
    findings = fuzzer.findings
    print(findings.report())
    # Every route must have been exercised, or the run proves nothing about it.
    missing = {f"{op.method.upper()} {op.path}" for op in operations} - findings.sent.keys()
    assert not missing, f"routes never called (time ran out?): {sorted(missing)}"
    assert not findings.defects, "\n".join(findings.defects)
    # The digest does follow the state: accepted writes changed it (else the check is empty).
    assert findings.writes > 0
    # The cluster is whole afterwards: every replica agrees and every node is ready.
    for node in cluster.nodes:
        assert call(f"{node.url}/v1.0/healthz/ready").status == 204
    admin = cluster.admin_headers()
    digests = {
        call(f"{node.url}/admin/digest", headers=admin).json["digest"] for node in cluster.nodes
    }
    assert len(digests) == 1, digests
