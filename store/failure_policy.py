"""What happens when delivering one occurrence fails: drop it, or retry after an interval that
is constant or grows exponentially (Dapr has drop and constant; exponential backoff is tock's).

Pure and deterministic: the interval of the n-th retry is a function of the policy and n alone,
computed alike on every replica (the multiplier is an IEEE double, and Python's float arithmetic
is the same on every platform tock runs on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from store.bounds import DURATION_MS_MAX, RETRY_INTERVAL_MS_MIN, UINT32_MAX
from store.errors import ValidationError
from store.request_fields import duration_ms, format_proto_duration, one_of, uint32

# The retry interval of a constant policy submitted without one: the default policy's.
RETRY_INTERVAL_MS_DEFAULT = 1000
# An exponential policy's defaults, for the fields a request leaves out.
EXPONENTIAL_MAX_INTERVAL_MS_DEFAULT = 5 * 60_000
EXPONENTIAL_MULTIPLIER_DEFAULT = 2.0
# A multiplier above this reaches any maximum interval within a couple of retries anyway.
MULTIPLIER_MAX = 100.0


class FailureKind(StrEnum):
    DROP = "drop"
    CONSTANT = "constant"
    EXPONENTIAL = "exponential"


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """`interval_ms` is the constant interval, or an exponential policy's first one."""

    kind: FailureKind
    interval_ms: int = 0
    # None retries forever, as Dapr's constant policy without maxRetries does.
    max_retries: int | None = None
    # Exponential only: the interval grows by `multiplier` per retry, up to `max_interval_ms`.
    max_interval_ms: int = 0
    multiplier: float = 1.0

    def allows_retry(self, failed_attempts: int) -> bool:
        """True when an occurrence that has failed `failed_attempts` times gets another attempt."""
        assert failed_attempts >= 1
        if self.kind is FailureKind.DROP:
            return False
        return self.max_retries is None or failed_attempts <= self.max_retries

    def retry_interval_ms(self, failed_attempts: int) -> int:
        """How long after the `failed_attempts`-th failed attempt the next one is due."""
        assert failed_attempts >= 1 and self.kind is not FailureKind.DROP
        if self.kind is FailureKind.CONSTANT:
            return self.interval_ms
        try:
            grown = self.interval_ms * self.multiplier ** (failed_attempts - 1)
        except OverflowError:
            return self.max_interval_ms
        return self.max_interval_ms if math.isinf(grown) else min(int(grown), self.max_interval_ms)

    def validate(self) -> None:
        """The bounds a policy keeps for the job's whole life: checked at the edge and in apply."""
        if self.kind is FailureKind.DROP:
            return
        where = f"failurePolicy.{self.kind}"
        first = "interval" if self.kind is FailureKind.CONSTANT else "initialInterval"
        _check_interval(self.interval_ms, f"{where}.{first}")
        if self.max_retries is not None and not 0 <= self.max_retries <= UINT32_MAX:
            raise ValidationError(f"{where}.maxRetries must be at most {UINT32_MAX}")
        if self.kind is FailureKind.EXPONENTIAL:
            _check_interval(self.max_interval_ms, f"{where}.maxInterval")
            if self.max_interval_ms < self.interval_ms:
                raise ValidationError(f"{where}.maxInterval must be at least initialInterval")
            if not 1.0 <= self.multiplier <= MULTIPLIER_MAX:
                raise ValidationError(
                    f"{where}.multiplier must be between 1 and {MULTIPLIER_MAX:g}: "
                    f"got {self.multiplier!r}"
                )

    @classmethod
    def from_json(cls, value: object) -> FailurePolicy:
        """Parse `{"drop": {}}`, `{"constant": {"interval": "1s", "maxRetries": 3}}` or
        `{"exponential": {"initialInterval", "maxInterval", "multiplier", "maxRetries"}}`."""
        if not isinstance(value, dict) or len(value) != 1:
            raise ValidationError(
                'failurePolicy must be {"drop": {}}, {"constant": {"interval": ..., '
                '"maxRetries": ...}} or {"exponential": {"initialInterval": ..., '
                '"maxInterval": ..., "multiplier": ..., "maxRetries": ...}}'
            )
        ((kind, body),) = value.items()
        if not isinstance(body, dict):
            raise ValidationError(f"failurePolicy.{kind} must be an object")
        if kind == FailureKind.DROP:
            return FAILURE_POLICY_DROP
        if kind == FailureKind.CONSTANT:
            policy = _constant(body)
        elif kind == FailureKind.EXPONENTIAL:
            policy = _exponential(body)
        else:
            raise ValidationError(
                f"failurePolicy has unknown kind {kind!r}: expected drop, constant or exponential"
            )
        policy.validate()
        return policy

    def to_json(self) -> dict[str, object]:
        """The JSON shape `from_json` accepts, with intervals as protobuf Durations."""
        if self.kind is FailureKind.DROP:
            return {"drop": {}}
        if self.kind is FailureKind.CONSTANT:
            body: dict[str, object] = {"interval": format_proto_duration(self.interval_ms)}
        else:
            body = {
                "initialInterval": format_proto_duration(self.interval_ms),
                "maxInterval": format_proto_duration(self.max_interval_ms),
                "multiplier": self.multiplier,
            }
        if self.max_retries is not None:
            body["maxRetries"] = self.max_retries
        return {str(self.kind): body}


FAILURE_POLICY_DEFAULT = FailurePolicy(FailureKind.CONSTANT, interval_ms=1000, max_retries=3)
FAILURE_POLICY_DROP = FailurePolicy(FailureKind.DROP)


def _constant(body: dict[str, object]) -> FailurePolicy:
    interval = body.get("interval")
    retries = one_of(body, "maxRetries", "max_retries", "failurePolicy.constant")
    return FailurePolicy(
        FailureKind.CONSTANT,
        interval_ms=(
            RETRY_INTERVAL_MS_DEFAULT
            if interval is None
            else duration_ms(interval, "failurePolicy.constant.interval")
        ),
        max_retries=None if retries is None else uint32(retries, "maxRetries"),
    )


def _exponential(body: dict[str, object]) -> FailurePolicy:
    where = "failurePolicy.exponential"
    initial = one_of(body, "initialInterval", "initial_interval", where)
    maximum = one_of(body, "maxInterval", "max_interval", where)
    retries = one_of(body, "maxRetries", "max_retries", where)
    multiplier = body.get("multiplier", EXPONENTIAL_MULTIPLIER_DEFAULT)
    if isinstance(multiplier, bool) or not isinstance(multiplier, int | float):
        raise ValidationError(f"{where}.multiplier must be a number: got {multiplier!r}")
    if not math.isfinite(multiplier):
        raise ValidationError(f"{where}.multiplier must be a finite number")
    return FailurePolicy(
        FailureKind.EXPONENTIAL,
        interval_ms=(
            RETRY_INTERVAL_MS_DEFAULT
            if initial is None
            else duration_ms(initial, f"{where}.initialInterval")
        ),
        max_retries=None if retries is None else uint32(retries, "maxRetries"),
        max_interval_ms=(
            EXPONENTIAL_MAX_INTERVAL_MS_DEFAULT
            if maximum is None
            else duration_ms(maximum, f"{where}.maxInterval")
        ),
        multiplier=float(multiplier),
    )


def _check_interval(interval_ms: int, field: str) -> None:
    if not RETRY_INTERVAL_MS_MIN <= interval_ms <= DURATION_MS_MAX:
        raise ValidationError(
            f"{field} must be between {RETRY_INTERVAL_MS_MIN}ms and "
            f"{DURATION_MS_MAX // 3_600_000}h: got {format_proto_duration(interval_ms)}"
        )
