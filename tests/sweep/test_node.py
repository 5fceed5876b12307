"""A node's own disk: temporary folders of dead processes are swept, live ones kept; the
artifact cache stays within its bound and never evicts an entry in use."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweep.node import NodeCache, temp_dir

ROOT = Path(__file__).resolve().parents[2]
HOLD = "from sweep.node import temp_dir\nwith temp_dir('child-') as d:\n    print(d, flush=True)\n"


@pytest.fixture
def node_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ITX_NODE_DIR", str(tmp_path / "node"))
    return tmp_path / "node"


def hold_a_folder(seconds: float) -> tuple[subprocess.Popen, Path]:
    """A child process inside temp_dir for `seconds` (then it exits normally)."""
    code = HOLD + f"    import time; time.sleep({seconds})\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True
    )
    return child, Path(child.stdout.readline().strip())


def test_a_killed_process_folder_is_swept_and_a_live_one_kept(node_dir):
    dead, dead_folder = hold_a_folder(60)
    alive, alive_folder = hold_a_folder(60)
    (dead_folder / "weights.bin").write_bytes(b"x" * 1000)
    dead.send_signal(signal.SIGKILL)
    dead.wait(timeout=30)
    assert dead_folder.exists()  # SIGKILL: nothing of the process cleaned up
    with temp_dir("mine-") as mine:
        assert mine.is_dir()
        assert not dead_folder.exists() and not Path(f"{dead_folder}.lock").exists()
        assert alive_folder.exists()  # its owner lives: kept
    assert not mine.exists()
    alive.send_signal(signal.SIGKILL)
    alive.wait(timeout=30)
    with temp_dir("again-"):
        pass
    assert list((node_dir / "tmp").iterdir()) == []


def fill_with(size: int):
    def fill(folder: Path) -> None:
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"w" * size)

    return fill


def test_the_cache_evicts_least_recently_used_within_its_bound(node_dir):
    cache = NodeCache(max_bytes=2500)  # room for two 1000-byte entries
    calls = []

    def counted(folder: Path) -> None:
        calls.append(folder.name)
        fill_with(1000)(folder)

    for key in ("a", "b"):
        with cache.use(key, counted):
            pass
        time.sleep(0.02)  # file clocks: distinct recency
    with cache.use("a", counted) as entry:  # a hit: not filled again, now the most recent
        assert (entry / "model.safetensors").stat().st_size == 1000
    assert calls == ["a", "b"]
    time.sleep(0.02)
    with cache.use("c", counted):
        pass
    assert sorted(key for _, key, _ in cache.entries()) == ["a", "c"]  # b was least recent
    assert sum(size for *_, size in cache.entries()) == 2000


def test_an_entry_in_use_is_never_evicted(node_dir, caplog):
    cache = NodeCache(max_bytes=1500)  # room for one entry
    with cache.use("parent", fill_with(1000)) as parent:
        with cache.use("other", fill_with(1000)):
            pass
        assert (parent / "model.safetensors").exists()  # held by this trial: kept
        assert sorted(key for _, key, _ in cache.entries()) == ["parent"]  # `other` went
        with cache.use("third", fill_with(1000)):  # both in use now: over the bound, kept
            assert sorted(key for _, key, _ in cache.entries()) == ["parent", "third"]
        assert sorted(key for _, key, _ in cache.entries()) == ["parent"]  # released: gone
    assert "above its" in caplog.text
    assert sorted(key for _, key, _ in cache.entries()) == ["parent"]  # within the bound
    assert list((node_dir / "tmp").iterdir()) == []  # fill folders gone
