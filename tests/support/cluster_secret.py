"""The cluster secret of the test harnesses: a node refuses one shorter than 32 bytes."""

from __future__ import annotations

TEST_CLUSTER_SECRET = "tock-test-cluster-secret-of-at-least-32-bytes"
