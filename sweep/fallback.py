"""On-demand when spot cannot be had: Ray 2.60 will not do it by itself.

Ray's v1 autoscaler records each node type's last launch failure (capacity, price) in its status,
but the 2.60 node-type scorer ignores it (resource_demand_scheduler._resource_based_utilization_
scorer reads resources only and ties break by name), so while spot capacity is short it keeps
trying gpu_spot and never starts gpu_ondemand for demand that gpu_spot could take.

cluster.yaml gives gpu_ondemand a marker resource, `ondemand`, that no trial asks for. This
driver thread reads the autoscaler's status every `interval` seconds; while gpu_spot is reported
unavailable and trials wait, it asks for `ondemand` bundles (ray.autoscaler.sdk.request_resources),
which only gpu_ondemand can satisfy; the waiting trials then land on the new nodes. Once gpu_spot
launches again, or nothing waits, the request is withdrawn and idle on-demand nodes are removed
after `idle_timeout_minutes`. On-demand nodes stay capped by their own max_workers.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

log = logging.getLogger(__name__)

SPOT_TYPE = "gpu_spot"  # the names cluster.yaml uses (tests/sweep/test_cluster.py checks them)
MARKER = "ondemand"
INTERVAL_S = 30.0


def waiting_trials(status: dict[str, Any]) -> int:
    """Placement groups (one per Tune trial) the autoscaler sees pending."""
    load = status.get("load_metrics_report") or {}
    return sum(int(count) for _group, count in load.get("pg_demand") or [])


def spot_unavailable(status: dict[str, Any], spot_type: str = SPOT_TYPE) -> str | None:
    """The reason of the spot type's last failed launch, or None while it launches."""
    report = status.get("autoscaler_report") or {}
    records = (report.get("node_availability_summary") or {}).get("node_availabilities") or {}
    record = records.get(spot_type)
    if not record or record.get("is_available", True):
        return None
    info = record.get("unavailable_node_information") or {}
    return f"{info.get('category', '?')}: {info.get('description', '')}".strip()


def wanted(status: dict[str, Any], cap: int, spot_type: str = SPOT_TYPE) -> int:
    """How many on-demand bundles to hold now."""
    if spot_unavailable(status, spot_type) is None:
        return 0
    return min(waiting_trials(status), cap)


def read_status() -> dict[str, Any]:
    from ray._private import ray_constants
    from ray.experimental import internal_kv

    raw = internal_kv._internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
    return json.loads(raw) if raw else {}


class OnDemandFallback:
    def __init__(self, cap: int, interval: float = INTERVAL_S) -> None:
        self.cap, self.interval = cap, interval
        self.held = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="itx-fallback")

    def start(self) -> OnDemandFallback:
        self._thread.start()
        return self

    def step(self, status: dict[str, Any]) -> int:
        from ray.autoscaler.sdk import request_resources

        n = wanted(status, self.cap)
        if n != self.held:
            if n:
                log.warning(
                    "%s cannot be had (%s): asking for %d on-demand node(s) for waiting trials",
                    SPOT_TYPE,
                    spot_unavailable(status),
                    n,
                )
            request_resources(bundles=[{MARKER: 1}] * n)
            self.held = n
        return n

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.step(read_status())
            except Exception as err:  # the sweep must not die of its fallback
                log.warning("on-demand fallback: %s", err)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self.held:
            try:
                from ray.autoscaler.sdk import request_resources

                request_resources(bundles=[])
            except Exception as err:
                log.debug("on-demand request not withdrawn: %s", err)
