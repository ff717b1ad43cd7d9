"""App parking: due triggers whose app nobody can take yet wait here, by app, out of the wheel.

An app can take a trigger when it has a URL (it registered one) or a watch stream somewhere in
the cluster. A trigger of an app with neither is not an attempt: its job is parked instead of
delivered, and armed again once the app registers or a watcher connects (or once anything else
re-arms the job: an overwrite, a delete, a new epoch). Loop-only.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from node.engine.metrics import EngineMetrics
from store.machine import AppKey, AppRoute, JobKey


class Parking:
    """The apps' routes as committed, and the parked jobs of the apps that cannot take them
    (their keys and partitions: the jobs are read from the machine when armed again)."""

    def __init__(self, metrics: EngineMetrics) -> None:
        self._metrics = metrics
        self._routes: Mapping[AppKey, AppRoute] = {}
        # Apps with watch streams somewhere in the cluster: deliverable even without a URL.
        self._watched: frozenset[AppKey] = frozenset()
        self._parked: dict[AppKey, dict[JobKey, int]] = {}

    def route(self, app_key: AppKey) -> AppRoute | None:
        """The app's URL and token, if it registered them."""
        return self._routes.get(app_key)

    def deliverable(self, app_key: AppKey) -> bool:
        return app_key in self._routes or app_key in self._watched

    def update(
        self, routes: Mapping[AppKey, AppRoute], watched: Collection[AppKey]
    ) -> list[JobKey]:
        """Take the apps' routes and watchers as now committed; return the parked jobs whose
        app can take them now, to arm (arming unparks them)."""
        self._routes, self._watched = routes, frozenset(watched)
        return [
            key
            for app_key, parked in self._parked.items()
            if self.deliverable(app_key)
            for key in parked
        ]

    def park(self, key: JobKey, partition: int) -> None:
        self._parked.setdefault((key[0], key[1]), {})[key] = partition
        self._metrics.triggers_waiting_for_app += 1

    def unpark(self, key: JobKey) -> None:
        app_key = (key[0], key[1])
        parked = self._parked.get(app_key)
        if parked is not None and parked.pop(key, None) is not None:
            self._metrics.triggers_waiting_for_app -= 1
            if not parked:
                del self._parked[app_key]

    def drop_partitions(self, partitions: Collection[int]) -> None:
        """Forget the parked jobs of partitions this node no longer owns."""
        for key, partition in [item for parked in self._parked.values() for item in parked.items()]:
            if partition in partitions:
                self.unpark(key)
