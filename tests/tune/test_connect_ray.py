"""Without an address a sweep starts a private Ray, even while another Ray instance runs on the
machine: it never joins a stranger's instance (whose end would take the sweep's trials with it)."""

from __future__ import annotations

import subprocess
import sys

from sweep_helpers import REPO, sweep_env

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


def test_no_address_means_a_private_ray_never_a_strangers():
    env = sweep_env()
    stranger = subprocess.Popen(
        [sys.executable, "-c", STRANGER], cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert stranger.stdout is not None
        theirs = stranger.stdout.readline().strip()  # waits until the stranger's Ray is up
        assert theirs, "the other Ray instance did not start"
        done = subprocess.run(
            [sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
        )
    finally:
        stranger.communicate("", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "started a private local Ray instance" in done.stdout
    ours = next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("gcs "))
    assert ours != theirs
