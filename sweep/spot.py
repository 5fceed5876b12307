"""Spot interruption: a watcher inside each trial polls the instance metadata service; on a notice
it drains its node with reason PREEMPTION and asks the training loop to save now.

Why both: EC2 gives two minutes between the notice and the termination. Ray's v1 AWS autoscaler
does not read the notice, so without the drain the node just vanishes and Tune counts the lost
trial against `max_failures` (ray/tune/experiment/trial.py counts an actor error only when it is
not flagged preempted; the flag comes from the node's death info, AUTOSCALER_DRAIN_PREEMPTED,
which the GCS sets only for a node drained with DRAIN_NODE_REASON_PREEMPTION). Draining also
stops Ray from placing new trials there. The save makes the retry resume from the step reached at
the notice instead of the last periodic save (`train.checkpoint_every`).

The metadata endpoint comes from ITX_SPOT_METADATA_URL, which cluster.yaml sets on its worker
nodes (http://169.254.169.254); unset (laptops, tests without it) means no watcher. Tests point it
at a local server, one path per node, as EC2 gives one endpoint per instance.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

URL_VAR = "ITX_SPOT_METADATA_URL"
ACTION_PATH = "/latest/meta-data/spot/instance-action"  # 404 until a notice is issued
TOKEN_PATH = "/latest/api/token"  # IMDSv2 session token (PUT)
POLL_SECONDS = 5.0  # AWS recommends polling every 5 seconds
POLL_VAR = "ITX_SPOT_POLL_SECONDS"  # tests poll faster
DRAIN_REASON = "DRAIN_NODE_REASON_PREEMPTION"


def instance_action(base: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The pending interruption notice ({"action": "terminate", "time": ...}) or None.

    IMDSv2 first (a session token), IMDSv1 when the token request is refused.
    """
    headers = {}
    try:
        request = urllib.request.Request(
            base.rstrip("/") + TOKEN_PATH,
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            headers["X-aws-ec2-metadata-token"] = response.read().decode()
    except urllib.error.HTTPError:
        pass  # IMDSv1-only endpoint
    request = urllib.request.Request(base.rstrip("/") + ACTION_PATH, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            notice = json.loads(response.read().decode())
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise
    return notice if isinstance(notice, dict) and notice.get("action") else None


def deadline_of(notice: dict[str, Any], now: float | None = None) -> float:
    """Epoch seconds of the announced termination (two minutes from now when unparseable)."""
    now = time.time() if now is None else now
    try:
        stamp = dt.datetime.fromisoformat(str(notice["time"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return now + 120.0
    return stamp.timestamp()


def drain_this_node(notice: dict[str, Any]) -> bool:
    """Ray's drain API (what `ray drain-node` calls) with reason PREEMPTION; returns whether the
    GCS accepted it.

    The deadline is now, not the announced time: the GCS records a drained node's death as
    AUTOSCALER_DRAIN_PREEMPTED (the flag Tune reads) only when it dies after the deadline, and
    EC2 may take the instance before the time it announced. Running work goes on until then;
    a draining node takes no new work either way.
    """
    import ray
    from ray.core.generated import autoscaler_pb2

    context = ray.get_runtime_context()
    client = ray._raylet.GcsClient(address=context.gcs_address)
    left = deadline_of(notice) - time.time()
    accepted, rejection = client.drain_node(
        context.get_node_id(),
        autoscaler_pb2.DrainNodeReason.Value(DRAIN_REASON),
        f"spot interruption notice: {notice.get('action')} in {left:.0f} s",
        int(time.time() * 1000),
    )
    if not accepted:
        log.warning("drain of this node refused: %s", rejection)
    return bool(accepted)


class SpotWatcher:
    """Polls `base` every `interval` seconds in a daemon thread; calls `on_notice` once."""

    def __init__(
        self,
        base: str,
        on_notice: Callable[[dict[str, Any]], None],
        interval: float = POLL_SECONDS,
    ) -> None:
        self.base, self.on_notice, self.interval = base, on_notice, interval
        self.notice: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="itx-spot")

    def start(self) -> SpotWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                notice = instance_action(self.base)
            except (OSError, ValueError) as err:  # a metadata hiccup must not end the trial
                log.debug("spot metadata poll failed: %s", err)
                notice = None
            if notice is not None:
                self.notice = notice
                log.warning("spot interruption notice: %s", notice)
                try:
                    self.on_notice(notice)
                except Exception:
                    log.exception("handling the spot interruption notice failed")
                return
            self._stop.wait(self.interval)


def on_interruption(notice: dict[str, Any]) -> None:
    """Drain the node (Tune then does not count the loss), then save training state now."""
    from trainers import preempt

    try:
        drain_this_node(notice)
    finally:
        preempt.request_save()


@contextmanager
def watching(interval: float = POLL_SECONDS) -> Iterator[SpotWatcher | None]:
    """Around a trial: a watcher when ITX_SPOT_METADATA_URL is set, nothing otherwise."""
    base = os.environ.get(URL_VAR)
    if not base:
        yield None
        return
    interval = float(os.environ.get(POLL_VAR, interval))
    watcher = SpotWatcher(base, on_interruption, interval).start()
    try:
        yield watcher
    finally:
        watcher.stop()
