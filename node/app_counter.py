"""A counter per app, with a bound on how many apps it keeps apart.

The engine counts triggers and the service counts creates per app, so that /metrics can label
them by app. Every app is keyed by (namespace, app); once `apps_max` apps are counted, the apps
seen after them are counted together under `OTHER_APP`, so a cluster with a million apps cannot
grow a counter without end. Written on the event loop only, like every other counter of a node.
"""

from __future__ import annotations

AppKey = tuple[str, str]

APPS_TRACKED_MAX = 10_000
# The (namespace, app) every app beyond the bound is counted under.
OTHER_APP: AppKey = ("_other", "_other")


class AppCounter:
    __slots__ = ("_apps_max", "_counts")

    def __init__(self, apps_max: int = APPS_TRACKED_MAX) -> None:
        assert apps_max >= 1
        self._apps_max = apps_max
        self._counts: dict[AppKey, int] = {}

    def count(self, namespace: str, app: str, n: int = 1) -> None:
        key: AppKey = (namespace, app)
        counts = self._counts
        if key not in counts and len(counts) >= self._apps_max:
            key = OTHER_APP
        counts[key] = counts.get(key, 0) + n

    def total(self) -> int:
        return sum(self._counts.values())

    def by_app(self) -> dict[AppKey, int]:
        return dict(self._counts)
