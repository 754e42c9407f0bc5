"""`ray job submit --working-dir . -- python sweeps/gmcwd_weights.py --smoke ...` against a
Ray head started with `ray start --head` on loopback: the script joins that cluster."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pandas as pd
import pytest

from sweep_helpers import RAY, REPO, free_port, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def head(tmp_path):
    """A Ray head on 127.0.0.1 in its own process group, torn down by killing that group
    (`ray stop` would also stop the test session's own Ray). Every port it listens on is a free
    one: with Ray's fixed defaults (the job agent's 52365 above all), another Ray on the machine
    — the test session's own — holds them, and the head's job agent never comes up."""
    port, dash = free_port(), free_port()
    agent, agent_grpc, env_agent, metrics, client = (free_port() for _ in range(5))
    temp = tempfile.mkdtemp(prefix="rmm-")  # short: Ray's socket paths must stay under 108 bytes
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    env.pop("RAY_ADDRESS", None)
    cmd = [
        RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
        f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={env_agent}", f"--metrics-export-port={metrics}",
        f"--ray-client-server-port={client}",
        "--num-cpus=2", "--disable-usage-stats", f"--temp-dir={temp}",
    ]  # fmt: skip
    log_path = tmp_path / "head.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        wait_until(lambda: _runs_a_job(address, env), 240, "the Ray head to run a job", service=proc, log=log_path)
    except BaseException:
        _stop(proc, log, temp)
        raise
    yield address, env
    _stop(proc, log, temp)


READY = "robustmm-test-job-ran"


def _runs_a_job(address: str, env: dict[str, str]) -> bool:
    """Whether the head accepts and runs a job: `ray job list` answers, and even a job listed as
    submitted can be refused ("No available agent to submit job"), before the agent that runs jobs
    has registered, and a loaded machine widens that gap; so readiness is a job that ran."""
    probe = [RAY, "job", "submit", f"--address={address}", "--", sys.executable, "-c", f"print({READY!r})"]
    try:
        done = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0 and READY in done.stdout


def _stop(proc: subprocess.Popen, log, temp: str) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    log.close()
    shutil.rmtree(temp, ignore_errors=True)


def test_ray_job_submit_runs_the_smoke_sweep_on_the_cluster(head, tmp_path):
    address, env = head
    out = tmp_path / "sweep"
    cmd = [
        RAY, "job", "submit", f"--address={address}", "--working-dir", ".", "--",
        sys.executable, "sweeps/gmcwd_weights.py", "--smoke", "--num-samples=2", "--max-concurrent=2",
        "--epochs=1", "--set=classifier.epochs=1", "--set=dataset.n_train=400", "--set=dataset.n_test=100",
        f"--out={out}",
    ]  # fmt: skip
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    text = r.stdout + r.stderr
    assert r.returncode == 0, text[-4000:]
    assert "joined the" in text and "Pareto front of gmcwd_weights" in text
    trials = pd.read_parquet(out / "trials.parquet")
    assert len(trials) == 2 and (trials["status"] == "complete").all()
