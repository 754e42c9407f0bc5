"""A sweep whose Ray cluster goes away mid-trial (the head killed, as `ray stop --force` does)
ends with one line saying so and how to go on, and exit code 2: no traceback, no TypeError from
trials that never reported."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from sweep_helpers import RAY, REPO, free_port, lines_of, next_line, sweep_command, sweep_env, wait_until

pytestmark = pytest.mark.slow

# what the sweep will do with the head: join it (as the sweep does) and find its CPUs to run trials on
JOIN = """
import sys, ray
from robustmm.tune.ray_connect import connect_ray
connect_ray(sys.argv[1])
print("cpus", ray.cluster_resources().get("CPU", 0))
"""


def _joinable(port: int, env: dict[str, str]) -> bool:
    """Whether a driver can join the head and sees its two CPUs (its GCS port answers earlier)."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", JOIN, f"127.0.0.1:{port}"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0 and "cpus 2.0" in done.stdout


@pytest.fixture
def head(tmp_path):
    """A Ray head of its own (own temp dir and ports) in its own process group: killing that
    group is `ray stop --force` for this head alone (`ray stop` would stop every Ray here)."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="rmm-")  # short: Ray's socket paths must stay under 108 bytes
    env = sweep_env()
    env["RAY_AUTH_MODE"] = "disabled"
    cmd = [
        RAY, "start", "--head", "--block", f"--port={port}", f"--ray-client-server-port={free_port()}",
        "--include-dashboard=false", "--num-cpus=2", "--disable-usage-stats", f"--temp-dir={temp}",
    ]  # fmt: skip
    log_path = tmp_path / "head.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        wait_until(lambda: _joinable(port, env), 180, "a driver to join the Ray head", service=proc, log=log_path)
        yield port, proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def test_a_cluster_lost_mid_trial_ends_the_sweep_with_one_line(head, tmp_path):
    port, head_proc = head
    env = sweep_env()
    env["RAY_AUTH_MODE"] = "disabled"
    cmd = sweep_command(tmp_path / "sweep", f"--address=127.0.0.1:{port}")
    sweep = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines, seen = lines_of(sweep.stderr), []
        deadline = time.monotonic() + 180
        while not any(" started (" in line for line in seen):  # a trial is running on the cluster
            seen.append(next_line(lines, max(0.1, deadline - time.monotonic()), "a trial to start", seen))
        os.killpg(head_proc.pid, signal.SIGKILL)
        lost_at = time.monotonic()
        sweep.wait(timeout=90)
        took = time.monotonic() - lost_at
        while (line := lines.get(timeout=30)) is not None:  # the sweep ended: its stderr is closing
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
