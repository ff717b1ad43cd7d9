"""The hard bounds every accepted job keeps for its whole life, checked at the edge and in apply.

A job is accepted only if every computation it will ever need stays in range: its times are
instants between 1970 and the end of year 9999 (what RFC3339 and Python's datetime can name), its
durations are at most a century, its periods and retry intervals at least 100 ms (a faster job
would keep a node busy for nothing), and its counts fit Dapr's uint32 fields. A sequence whose next
occurrence would fall after TIME_MS_MAX ends there, as if the schedule had no time left; a retry
that would fall after it counts the occurrence as exhausted. So nothing computed from an accepted
job can overflow, raise or be refused by a codec, on any node, at any time.

These bounds are the same on every node by construction: `JobMachine.apply` checks them, so they
are constants rather than configuration (replicas configured differently must not disagree about
a command). The configurable limits (name length, data bytes, quotas) are tighter bounds applied at
the HTTP and gRPC edge only, and each stays within the hard bound here.

Bounds (name: value; what it bounds):
- TIME_MS_MIN .. TIME_MS_MAX: 1970-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z; dueTime, the
  end of a ttl, every occurrence, a retry, the time a node stamps in a command.
- DURATION_MS_MAX: 100 years (36,525 days); @every periods and retry intervals.
- PERIOD_MS_MIN: 100 ms; @every and bare-duration schedules (cron's period is 1 s at least).
- RETRY_INTERVAL_MS_MIN: 100 ms; a constant policy's retry interval.
- UINT32_MAX: 4,294,967,295; repeats and maxRetries (Dapr's uint32 fields).
- JITTER_MS_MAX: 1 day; a job's jitter, the most its occurrences are delayed.
- DELIVERY_TIMEOUT_MS_MIN .. DELIVERY_TIMEOUT_MS_MAX: 100 ms .. 1 hour; a job's deliveryTimeout.
- SCOPE_CHARS_MAX: 256; a namespace and an app id.
- DATA_BYTES_HARD_MAX: 64 MiB; a job's data, whatever the edge is configured to.
"""

from __future__ import annotations

TIME_MS_MIN = 0
TIME_MS_MAX = 253_402_300_799_999
TIME_RANGE_TEXT = "1970-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z"

DURATION_MS_MAX = 36_525 * 86_400_000
PERIOD_MS_MIN = 100
RETRY_INTERVAL_MS_MIN = 100

JITTER_MS_MAX = 86_400_000
DELIVERY_TIMEOUT_MS_MIN = 100
DELIVERY_TIMEOUT_MS_MAX = 3_600_000

# Dapr's repeats and maxRetries are uint32 fields.
UINT32_MAX = 2**32 - 1

SCOPE_CHARS_MAX = 256
DATA_BYTES_HARD_MAX = 64 * 1024 * 1024


def time_in_range(ms: int) -> bool:
    return TIME_MS_MIN <= ms <= TIME_MS_MAX
