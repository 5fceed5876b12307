"""Shared fixtures. Tests never reach a hub; pretrained synthetic encoders are cached by content
hash under .cache/ in the repository (ignored by git), so a second run builds nothing."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COUNTS: Counter[str] = Counter()  # what the reliability tests tried, printed at the end
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("ITX_CACHE", str(ROOT / ".cache" / "itx"))
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def pytest_collection_finish(session: pytest.Session) -> None:
    if not session.items:  # exit code 5 must never pass silently
        raise pytest.UsageError("no tests collected")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if COUNTS:
        terminalreporter.section("reliability counts")
        for what, n in sorted(COUNTS.items()):
            terminalreporter.write_line(f"{what}: {n}")
