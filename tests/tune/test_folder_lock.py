"""One owner per sweep folder: a second driver on a held folder is refused at once, naming the
holder's PID, and writes nothing; a killed holder frees the folder; a refused sweep leaves none.
(Two real sweep drivers on one folder: tests/faults/test_concurrent_sweep.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from robustmm.errors import ConfigError
from robustmm.tune.folder_lock import LOCK_FILE, folder_lock

from sweep_helpers import REPO, first_line

HOLD = "import sys; from robustmm.tune.folder_lock import folder_lock\nwith folder_lock(sys.argv[1]):\n"
HOLD += "    print('held', flush=True); sys.stdin.read()\n"


def _holder(out: Path) -> subprocess.Popen:
    """A process that holds `out`'s lock until its stdin closes; returns once it holds it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert first_line(proc, 60, "the holder to take the lock").strip() == "held"  # waits for the lock itself
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return proc


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_held_folder_is_refused_with_the_holders_pid_and_nothing_written(tmp_path):
    out = tmp_path / "sweep"
    holder = _holder(out)
    try:
        before = _tree(out)
        with pytest.raises(ConfigError, match=rf"in use by another sweep \(PID {holder.pid}\)"):
            with folder_lock(out):
                pytest.fail("the lock of a held folder was granted")
        assert _tree(out) == before
    finally:
        holder.communicate("")  # closing stdin ends the holder, which releases the lock
    with folder_lock(out):
        assert (out / LOCK_FILE).read_text().strip() == str(os.getpid())


def test_a_killed_holder_frees_the_folder(tmp_path):
    out = tmp_path / "sweep"
    holder = _holder(out)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    with folder_lock(out):
        pass


def test_a_refusal_inside_the_lock_leaves_no_trace(tmp_path):
    fresh, existing = tmp_path / "fresh", tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    for out in (fresh, existing):
        with pytest.raises(ConfigError, match="bad"):
            with folder_lock(out):
                raise ConfigError("bad config")
    assert not fresh.exists()
    assert _tree(existing) == {"notes.txt": b"mine"}
