"""The Python client of a tock cluster (the Jobs API and the watch stream) and the `tock` client
commands built on it."""

from node.client.client import TockClient

__all__ = ["TockClient"]
