"""The Ray cluster tests run in a network and PID namespace (see test_ray_cluster.py); the
tests in ``on_cluster/`` are collected only there (``XIAOYOU_RAY_CLUSTER=1``)."""

from __future__ import annotations

import os

collect_ignore = [] if os.environ.get("XIAOYOU_RAY_CLUSTER") == "1" else ["on_cluster"]
