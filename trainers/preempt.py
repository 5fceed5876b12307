"""A request, from outside the training loop, to save training state at the next step.

Set by the spot-interruption watcher (sweep/spot.py) when the node will be terminated; read by
the loop, which saves once and clears it. Plain threading: trainers never imports Ray.
"""

from __future__ import annotations

import threading

_SAVE = threading.Event()


def request_save() -> None:
    _SAVE.set()


def take_save_request() -> bool:
    """True once per request (clears it)."""
    if _SAVE.is_set():
        _SAVE.clear()
        return True
    return False
