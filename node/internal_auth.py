"""Signed node-to-node HTTP: how a member proves that an `/internal/*` request is its own.

Every request carries `tock-signature: {time_ms}:{nonce}:{mac}`. The MAC is HMAC-SHA256, under a
key derived from the cluster secret (the secret itself never travels), over the receiving node's
HTTP address, the method, the path, the SHA-256 of the body, the sender's wall time and a random
nonce. The receiver refuses:
- a signature that does not verify (a stranger, a request altered on the way, or one signed for
  another member);
- a time further than `window_s` from its own clock, either way: a recorded request is useless
  once that long has passed. The window is far wider than the clock offset members may have
  (they stop firing beyond 250 ms by default), so a member's request is never refused for it;
- a nonce it has already accepted within the window: a recorded request replayed at once.

The nonces accepted within the window are remembered, at most `replay_cache_max` of them; a
request that would need more is refused as Unavailable (its sender retries it), never accepted
unremembered, so a replay can never slip through a full cache.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import secrets

from store.clock import Clock
from store.errors import Unauthenticated, Unavailable

SIGNATURE_HEADER = "tock-signature"
NONCE_BYTES = 16
# A wall time in ms has 13 digits until the year 2286; more is no time a member sends.
TIME_DIGITS_MAX = 15
_KEY_LABEL = b"tock internal request signing v2"


def signing_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), _KEY_LABEL, hashlib.sha256).digest()


def _mac(
    key: bytes, audience: str, method: str, path: str, body: bytes, time_ms: int, nonce: str
) -> str:
    signed = b"\n".join(
        (
            audience.encode("utf-8", "surrogateescape"),
            method.encode(),
            path.encode("utf-8", "surrogateescape"),
            hashlib.sha256(body).digest(),
            str(time_ms).encode(),
            nonce.encode(),
        )
    )
    return hmac.new(key, signed, hashlib.sha256).hexdigest()


class RequestSigner:
    """Signs the requests this node sends to other members."""

    def __init__(self, secret: str, clock: Clock) -> None:
        self._key = signing_key(secret)
        self._clock = clock

    def signature(self, audience: str, method: str, path: str, body: bytes) -> str:
        """The signature of a request to the member serving HTTP at `audience` (HOST:PORT)."""
        time_ms = self._clock.wall_ms()
        nonce = secrets.token_hex(NONCE_BYTES)
        mac = _mac(self._key, audience, method, path, body, time_ms, nonce)
        return f"{time_ms}:{nonce}:{mac}"


class SignatureCheck:
    """Verifies the signatures of requests that reach this node's internal routes; `audience`
    is this node's HTTP address (HOST:PORT), as the other members address it."""

    def __init__(
        self,
        secret: str,
        clock: Clock,
        *,
        audience: str,
        window_s: float,
        replay_cache_max: int,
    ) -> None:
        self._key = signing_key(secret)
        self._audience = audience
        self._clock = clock
        self._window_ms = round(window_s * 1000)
        self._replay_cache_max = replay_cache_max
        # Nonces accepted within the window, and when each may be forgotten (its time plus the
        # window: after that its request is refused as stale anyway).
        self._seen: set[str] = set()
        self._expiries: list[tuple[int, str]] = []

    def check(self, method: str, path: str, body: bytes, signature: str | None) -> None:
        """Return if the request is a member's, fresh and new; else raise Unauthenticated (or
        Unavailable when too many requests arrived within the window to remember another)."""
        time_text, _, rest = (signature or "").partition(":")
        nonce, _, mac = rest.partition(":")
        well_formed = (
            time_text.isascii()
            and time_text.isdecimal()
            and len(time_text) <= TIME_DIGITS_MAX
            and len(nonce) == 2 * NONCE_BYTES
        )
        if not well_formed:
            raise Unauthenticated(f"missing or malformed {SIGNATURE_HEADER} header")
        time_ms = int(time_text)
        expected = _mac(self._key, self._audience, method, path, body, time_ms, nonce)
        if not hmac.compare_digest(mac.encode(), expected.encode()):
            raise Unauthenticated(f"wrong {SIGNATURE_HEADER}")
        now_ms = self._clock.wall_ms()
        if abs(now_ms - time_ms) > self._window_ms:
            raise Unauthenticated(f"stale {SIGNATURE_HEADER}: {now_ms - time_ms} ms from now")
        self._forget_expired(now_ms)
        if nonce in self._seen:
            raise Unauthenticated(f"replayed {SIGNATURE_HEADER}")
        if len(self._seen) >= self._replay_cache_max:
            raise Unavailable("too many internal requests within the signature window")
        self._seen.add(nonce)
        heapq.heappush(self._expiries, (time_ms + self._window_ms, nonce))

    def _forget_expired(self, now_ms: int) -> None:
        while self._expiries and self._expiries[0][0] < now_ms:
            _, nonce = heapq.heappop(self._expiries)
            self._seen.discard(nonce)
