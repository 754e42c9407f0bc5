"""Two real sweep drivers on one --out: the second is refused at once, and the first ends as if
it had run alone (the fast tests of the folder lock are in tests/tune/test_folder_lock.py)."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from robustmm.tune.folder_lock import LOCK_FILE

from fault_checks import assert_recorded_once, assert_same_trials
from sweep_helpers import REPO, sweep_command, sweep_env, wait_until

pytestmark = pytest.mark.slow


def _holds(driver: subprocess.Popen, out) -> bool:
    """Whether `driver` holds `out`'s lock (the lock file names the holder's PID)."""
    lock = out / LOCK_FILE
    try:
        return lock.read_text().strip() == str(driver.pid)
    except OSError:
        return False


def test_a_second_sweep_on_a_running_sweeps_folder_is_refused(tmp_path, smoke_reference):
    """Two real drivers on one --out: the second fails at once (exit 2, the first's PID), and the
    first ends with its own trials only, each recorded once, the same as a sweep run alone."""
    out = tmp_path / "sweep"
    first = subprocess.Popen(
        sweep_command(out),
        cwd=REPO,
        env=sweep_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: _holds(first, out), 300, "the first sweep to hold its folder", service=first, every=0.2)
        second = subprocess.run(
            sweep_command(out), cwd=REPO, env=sweep_env(), capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 2, second.stderr
        assert f"in use by another sweep (PID {first.pid})" in second.stderr
        assert "Traceback" not in second.stderr
        assert first.wait(timeout=600) == 0
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)  # the driver and the Ray it started
            first.wait()
    keys = ["clean_accuracy", "worst_modality_auc_pgd"]
    trials = assert_recorded_once(out, "gmcwd_weights", keys)  # one sweep's trials, each number once
    assert (trials["status"] == "complete").all()
    reference = assert_recorded_once(smoke_reference, "gmcwd_weights", keys)
    assert len(trials) == len(reference)
    assert_same_trials(smoke_reference, out, trials["trial"], keys)
