"""What the transport's unit tests (tests/unit/store/test_raft_transport*.py) import from here.

The fault tests themselves drive tests/integration/raft_cluster.py, which owns free_ports.
"""

from __future__ import annotations

from tests.integration.raft_cluster import free_ports

__all__ = ["free_ports"]
