"""A sweep whose Ray cluster goes away mid-trial (the head killed, as `ray stop --force` does)
ends with one line saying so and how to go on, and exit code 2: no traceback, no TypeError from
trials that never reported."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from sweep_helpers import REPO, sweep_command, sweep_env

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def head(tmp_path):
    """A Ray head of its own (own temp dir and ports) in its own process group: killing that
    group is `ray stop --force` for this head alone (`ray stop` would stop every Ray here)."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="rmm-")  # short: Ray's socket paths must stay under 108 bytes
    env = sweep_env()
    env["RAY_AUTH_MODE"] = "disabled"
    cmd = [
        RAY, "start", "--head", "--block", f"--port={port}", f"--ray-client-server-port={_free_port()}",
        "--include-dashboard=false", "--num-cpus=2", "--disable-usage-stats", f"--temp-dir={temp}",
    ]  # fmt: skip
    log = open(tmp_path / "head.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 120
    while not _answers(port):
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "head.log").read_text()[-3000:]
        time.sleep(0.5)
    yield port, proc
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    log.close()
    shutil.rmtree(temp, ignore_errors=True)


def _lines(stream) -> queue.Queue:
    """The lines of `stream` as they come (None at its end), read by a thread."""
    q: queue.Queue = queue.Queue()

    def read() -> None:
        for line in stream:
            q.put(line)
        q.put(None)

    threading.Thread(target=read, daemon=True).start()
    return q


def test_a_cluster_lost_mid_trial_ends_the_sweep_with_one_line(head, tmp_path):
    port, head_proc = head
    env = sweep_env()
    env["RAY_AUTH_MODE"] = "disabled"
    cmd = sweep_command(tmp_path / "sweep", f"--address=127.0.0.1:{port}")
    sweep = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines, seen = _lines(sweep.stderr), []
        deadline = time.monotonic() + 180
        while not any(" started (" in line for line in seen):  # a trial is running on the cluster
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "".join(seen)[-3000:]
            seen.append(line)
        os.killpg(head_proc.pid, signal.SIGKILL)
        lost_at = time.monotonic()
        sweep.wait(timeout=90)
        took = time.monotonic() - lost_at
        while (line := lines.get(timeout=30)) is not None:
            seen.append(line)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
    text = "".join(seen)
    assert sweep.returncode == 2, text[-3000:]
    last = text.strip().splitlines()[-1]
    assert last.startswith("robustmm: error: lost the Ray cluster at "), text[-3000:]
    assert last.endswith("--resume"), last
    assert "Traceback" not in text and "TypeError" not in text, text[-3000:]
    assert took < 45, f"the driver took {took:.0f} s to end"
