"""Signed node-to-node requests (node/internal_auth.py) and the admin credential's parsing
(node/access.py), on a fake clock: what is fresh, what is a replay, what the cache forgets."""

from __future__ import annotations

import pytest

from node.access import bearer, check_admin_token
from node.internal_auth import RequestSigner, SignatureCheck
from store.clock import FakeClock
from store.errors import Unauthenticated, Unavailable, ValidationError

SECRET = "a-cluster-secret-of-some-length!"
ME = "127.0.0.1:3501"
PATH = "/internal/v1/deliver"
WINDOW_S = 30.0


def check(clock: FakeClock, cache_max: int = 100) -> SignatureCheck:
    return SignatureCheck(SECRET, clock, audience=ME, window_s=WINDOW_S, replay_cache_max=cache_max)


def test_a_fresh_request_passes_once_and_its_replay_is_refused() -> None:
    clock = FakeClock()
    checker = check(clock)
    signature = RequestSigner(SECRET, clock).signature(ME, "POST", PATH, b"body")
    checker.check("POST", PATH, b"body", signature)
    with pytest.raises(Unauthenticated, match="replayed"):
        checker.check("POST", PATH, b"body", signature)


@pytest.mark.parametrize(
    ("secret", "audience", "method", "path", "body"),
    [
        ("another secret", ME, "POST", PATH, b"body"),
        (SECRET, "127.0.0.1:3502", "POST", PATH, b"body"),
        (SECRET, ME, "PUT", PATH, b"body"),
        (SECRET, ME, "POST", "/internal/v1/other", b"body"),
        (SECRET, ME, "POST", PATH, b"other body"),
    ],
    ids=["secret", "audience", "method", "path", "body"],
)
def test_a_signature_over_anything_else_is_refused(
    secret: str, audience: str, method: str, path: str, body: bytes
) -> None:
    clock = FakeClock()
    signature = RequestSigner(secret, clock).signature(audience, method, path, body)
    with pytest.raises(Unauthenticated, match="wrong"):
        check(clock).check("POST", PATH, b"body", signature)


@pytest.mark.parametrize(
    "signature", [None, "", "1:2:3", "x:" + "0" * 32 + ":00", "1" * 16 + ":" + "0" * 32 + ":00"]
)
def test_a_malformed_signature_is_refused(signature: str | None) -> None:
    with pytest.raises(Unauthenticated):
        check(FakeClock()).check("POST", PATH, b"", signature)


@pytest.mark.parametrize("offset_s", [-WINDOW_S - 0.001, WINDOW_S + 0.001])
def test_a_signature_outside_the_window_either_way_is_stale(offset_s: float) -> None:
    clock = FakeClock()
    signer_clock = FakeClock(wall_ms=clock.wall_ms() + round(offset_s * 1000))
    signature = RequestSigner(SECRET, signer_clock).signature(ME, "POST", PATH, b"")
    with pytest.raises(Unauthenticated, match="stale"):
        check(clock).check("POST", PATH, b"", signature)
    # Just inside the window (a member whose clock is off by far more than the offset bound).
    inside = FakeClock(wall_ms=clock.wall_ms() + round(offset_s * 1000 * 0.99))
    check(clock).check(
        "POST", PATH, b"", RequestSigner(SECRET, inside).signature(ME, "POST", PATH, b"")
    )


def test_the_replay_cache_is_bounded_and_forgets_what_the_window_refuses_anyway() -> None:
    clock = FakeClock()
    checker = check(clock, cache_max=3)
    signer = RequestSigner(SECRET, clock)
    first = signer.signature(ME, "POST", PATH, b"")
    checker.check("POST", PATH, b"", first)
    for _ in range(2):
        checker.check("POST", PATH, b"", signer.signature(ME, "POST", PATH, b""))
    # Full: a new request is refused as Unavailable (its sender retries), never let through
    # unremembered.
    with pytest.raises(Unavailable):
        checker.check("POST", PATH, b"", signer.signature(ME, "POST", PATH, b""))
    clock.advance(WINDOW_S + 1)
    # The old nonces are forgotten once stale: room again, and the old one is still refused.
    checker.check("POST", PATH, b"", signer.signature(ME, "POST", PATH, b""))
    with pytest.raises(Unauthenticated, match="stale"):
        checker.check("POST", PATH, b"", first)


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("  Bearer   abc  ", "abc"),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic abc", None),
        ("abc", None),
        (None, None),
    ],
)
def test_bearer_reads_only_a_bearer_credential(value: str | None, token: str | None) -> None:
    assert bearer(value) == token


@pytest.mark.parametrize("token", ["", "short", "x" * 15, "sixteen chars ok", "é" * 16])
def test_an_admin_token_is_long_printable_ascii(token: str) -> None:
    with pytest.raises(ValidationError):
        check_admin_token(token)
    check_admin_token("x" * 16)
