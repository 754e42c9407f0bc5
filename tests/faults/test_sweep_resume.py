"""`python sweeps/gmcwd_weights.py --smoke --resume` after the driver was killed finishes the
same sweep: no trial twice in Ray, in the Optuna study or in MLflow, and every trial it carried
over (finished, cut short or handed out before the stop) ends with the numbers of a sweep that
was never stopped."""

from __future__ import annotations

import os
import signal
import subprocess

import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient

from fault_checks import assert_recorded_once, assert_same_trials, same_values
from sweep_helpers import REPO, sweep_command, sweep_env, wait_until

pytestmark = pytest.mark.slow

N = 4  # the shrunk smoke sweep's trials (sweep_helpers.SMOKE_SHRINK)


def _env():
    return sweep_env()


def _cmd(out, *extra):
    return sweep_command(out, *extra)


def _run(out, *extra, log=None):
    return subprocess.Popen(_cmd(out, *extra), cwd=REPO, env=_env(), stdout=log, stderr=log, start_new_session=True)


def _finish(out, *extra, timeout=600):
    return subprocess.run(_cmd(out, *extra), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("how", ["killed", "ctrl-c"])
def test_resume_after_the_driver_was_stopped(tmp_path, how, smoke_reference):
    out = tmp_path / "sweep"
    log_path = tmp_path / "first.log"
    with open(log_path, "w") as log:
        proc = _run(out, log=log)
        two_complete = lambda: log_path.read_text().count(" complete: ") >= 2
        wait_until(two_complete, 300, "two trials of the sweep to complete", service=proc, log=log_path, every=0.5)
        assert proc.poll() is None, "the sweep ended before it could be interrupted:\n" + log_path.read_text()[-3000:]
        if how == "killed":
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started, no clean-up
            proc.wait()
        else:  # Ray Tune stops the trials and saves; the sweep says it was interrupted
            os.kill(proc.pid, signal.SIGINT)
            assert proc.wait(timeout=180) == 130, log_path.read_text()[-3000:]
    if how == "ctrl-c":
        text = log_path.read_text()
        assert "interrupted" in text and "--resume" in text
        # only the project's words: Ray Tune's Tuner.restore advice and the libraries' chatter
        # are in the sweep's libraries.log
        for chatter in ("Tuner.restore", "WARNING", "Started a local Ray instance", "A new study created"):
            assert chatter not in text, text[-3000:]
        assert "Tuner.restore" in (out / "libraries.log").read_text()
        partial = pd.read_parquet(out / "trials.parquet")  # Ctrl-C may land between two trials
        assert "interrupted" in set(partial["status"]) or len(partial) < N
    study = optuna.load_study(study_name="gmcwd_weights", storage=f"sqlite:///{out / 'optuna.db'}")
    before = {t.number: t.values for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert 2 <= len(before) < N

    again = _finish(out, "--resume")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Pareto front of gmcwd_weights" in again.stdout
    noise = [line for line in again.stderr.splitlines() if line.strip() and not line.startswith("[sweep] ")]
    assert not noise, noise  # quiet by default: one line per trial event and the progress lines

    trials = pd.read_parquet(out / "trials.parquet")
    assert sorted(trials["trial"]) == list(range(N)) and (trials["status"] == "complete").all()
    study = optuna.load_study(study_name="gmcwd_weights", storage=f"sqlite:///{out / 'optuna.db'}")
    complete = {t.number: t.values for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert sorted(complete) == list(range(N))
    assert all(complete[n] == v for n, v in before.items())  # finished trials were not re-run
    folders = (out / "ray" / "gmcwd_weights").glob("train_trial_*")
    reported = [d for d in folders if (d / "result.json").is_file() and (d / "result.json").stat().st_size]
    assert len(reported) == N  # (a trial killed before its first report may leave a folder without results)
    values = trials[[c for c in trials.columns if c.startswith("param.")]].round(12)
    assert not values.duplicated().any(), "a resumed sweep handed out the same values twice"

    keys = ["clean_accuracy", "worst_modality_auc_pgd"]
    assert_recorded_once(out, "gmcwd_weights", keys)  # the study and MLflow: each trial once, none RUNNING
    # the trials it carried over equal those of a sweep never stopped; the ones sampled after
    # the resume are new draws (the sampler is reseeded so as not to repeat its earlier draws)
    carried = same_values(smoke_reference, out)
    assert set(before) <= set(carried), (sorted(before), carried)
    assert_same_trials(smoke_reference, out, carried, keys)

    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("gmcwd_weights")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("robustmm.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("robustmm.kind") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert sorted(int(c.data.tags["trial_number"]) for c in finished) == list(range(N))
    assert all(c.info.status != "RUNNING" for c in children)


def test_resume_refuses_other_settings_and_fresh_run_refuses_existing_dir(tmp_path):
    out = tmp_path / "empty"
    r = _finish(out, "--resume", timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("robustmm: error: --resume")
    out.mkdir()
    (out / "sweep.json").write_text("{}")
    r = _finish(out, timeout=120)
    assert r.returncode == 2 and "already holds a sweep; pass --resume" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["sweep.json"]
