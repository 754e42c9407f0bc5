"""Without an address a sweep starts a private Ray, even while another Ray instance runs on the
machine: it never joins a stranger's instance (whose end would take the sweep's trials with it).
With an address where no Ray answers, it fails at once with one line naming the address."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from robustmm.errors import ConfigError

from sweep_helpers import REPO, first_line, sweep_command, sweep_env

STRANGER = """
import ray, sys
ray.init(num_cpus=1, include_dashboard=False)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
"""
PROBE = """
import ray
from robustmm.tune.ray_connect import connect_ray
print(connect_ray(num_cpus=1))
print("gcs", ray.get_runtime_context().gcs_address)
ray.shutdown()
"""


@pytest.mark.slow  # starts two Ray instances
def test_no_address_means_a_private_ray_never_a_strangers():
    env = sweep_env()
    stranger = subprocess.Popen(
        [sys.executable, "-c", STRANGER], cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        theirs = first_line(stranger, 180, "the other Ray instance to start").strip()  # its GCS address, once up
        done = subprocess.run(
            [sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
        )
    finally:
        try:
            stranger.communicate("", timeout=120)  # closing its stdin ends the stranger
        except subprocess.TimeoutExpired:
            stranger.kill()
            stranger.communicate()
    assert done.returncode == 0, done.stderr
    assert "started a private local Ray instance" in done.stdout
    ours = next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("gcs "))
    assert ours != theirs


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the test uses it


def test_an_address_where_nothing_listens_fails_at_once_naming_it():
    from robustmm.tune.ray_connect import _check_reachable

    address = f"127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    with pytest.raises(ConfigError, match=rf"cannot reach the Ray cluster at '{address}'.*--address"):
        _check_reachable(address)
    assert time.monotonic() - start < 5


def test_a_port_that_opens_but_is_no_ray_fails_within_the_timeout():
    """What an unroutable address behind a proxy that accepts every connection looks like."""
    from robustmm.tune.ray_connect import _check_reachable, _gcs_endpoint

    host = _gcs_endpoint("127.0.0.1:6379")[0]  # where Ray takes 127.0.0.1 to mean (this machine's address)
    with socket.socket() as silent:
        silent.bind((host, 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(ConfigError, match=r"a connection opened, but no Ray GCS .* answered within 1 s"):
            _check_reachable(address, timeout=1)
    assert time.monotonic() - start < 5


def test_a_sweep_given_a_closed_port_ends_with_one_error_line(tmp_path):
    port = _closed_port()
    start = time.monotonic()
    done = subprocess.run(
        sweep_command(tmp_path / "sweep", f"--address=127.0.0.1:{port}"),
        cwd=REPO,
        env=sweep_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - start
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"robustmm: error: cannot reach the Ray cluster at '127.0.0.1:{port}'"), last
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "sweep").exists()
    assert took < 90, f"took {took:.0f} s"
