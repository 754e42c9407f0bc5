"""Faults inside trials, in one sweep: a trial's worker SIGKILLed at three points of its run, and a
trial whose loss turns NaN.

Four trials on a grid over `train.lr`, two at a time, a checkpoint every 2 epochs (3
representation + 2 classifier epochs: checkpoints after representation epochs 2 and 3 and
classifier epoch 2). The worker of one trial is killed

- `before_checkpoint`: at its first epoch report, when no checkpoint exists yet (it starts over);
- `after_checkpoint`: right after its first checkpoint was persisted (it continues from it);
- `in_evaluation`: while it evaluates the grid after its last training epoch (it only evaluates
  again). A function trainable waits inside `tune.report` until the driver asks for its next
  result, so the worker evaluates only once the driver has taken the last epoch's checkpoint;
  the kill waits (bounded) until the worker has spent CPU time since then, i.e. is evaluating
  (PGD with 20 steps makes the evaluation last about a second of CPU, the kill comes at 0.2 s).

The fourth trial (lr 1e6) diverges at its second step. The same sweep without kills is the
reference: each retried trial ends with the reference's objectives and grid rows, and the
sweep's records hold each trial once (Optuna, MLflow, trials.parquet), none left RUNNING.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient
from ray import tune

from robustmm.tune.callbacks import trial_number
from robustmm.tune.runner import run_sweep
from robustmm.tune.space import parse_sweep

from fault_checks import assert_recorded_once, load_study
from sweep_helpers import tiny_sweep

pytestmark = pytest.mark.slow

# train.lr of each trial -> where its worker is killed; DIVERGES is never killed, it fails by itself
KILL_AT = {0.001: "before_checkpoint", 0.002: "after_checkpoint", 0.003: "in_evaluation"}
DIVERGES = 1e6
LAST_EPOCH = ("classifier", 2)  # the last training epoch's report; its checkpoint comes with it
CPU_IN_EVALUATION = 0.2  # CPU seconds the worker spends after that checkpoint before it is killed
GRID = [
    {"attack": "missing", "targets": "each"},
    {"attack": "pgd", "targets": "each", "eps": [0.1, 0.2], "alpha": 0.05, "steps": 20},
]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class KillWorkers(tune.Callback):
    """SIGKILL each planned trial's worker once, at its point (KILL_AT), and note what happened:
    `killed[number]` (point, pid), `seen[number]` (every report the driver received: iteration,
    iterations since the last restore, worker pid, trial status), `missed` (a kill that never came)."""

    def __init__(self) -> None:
        self.killed: dict[int, dict[str, Any]] = {}
        self.seen: dict[int, list[tuple[int, int, int, str]]] = {}
        self.missed: list[str] = []

    def _kill(self, number: int, point: str, pid: int) -> None:
        self.killed[number] = {"point": point, "pid": pid}
        os.kill(pid, signal.SIGKILL)

    def _due(self, trial: Any, point: str) -> bool:
        return KILL_AT.get(trial.config["train.lr"]) == point and trial_number(trial) not in self.killed

    def on_trial_result(self, iteration, trials, trial, result, **info):
        seen = (result["training_iteration"], result["iterations_since_restore"], int(result["pid"]))
        self.seen.setdefault(trial_number(trial), []).append((*seen, result.get("trial_status", "")))
        if self._due(trial, "before_checkpoint") and result["training_iteration"] == 1:
            if trial.checkpoint is not None:
                self.missed.append(f"trial {trial_number(trial)} had a checkpoint at its first report")
            self._kill(trial_number(trial), "before_checkpoint", int(result["pid"]))

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        pid = int(trial.last_result["pid"])
        if self._due(trial, "after_checkpoint"):
            self._kill(trial_number(trial), "after_checkpoint", pid)
        elif self._due(trial, "in_evaluation"):
            if (trial.last_result.get("stage"), trial.last_result.get("epoch")) == LAST_EPOCH:
                # the worker evaluates once the driver asks for its next result, after this callback
                start = cpu_seconds(pid)
                threading.Thread(target=self._kill_evaluating, args=(trial_number(trial), pid, start)).start()

    def _kill_evaluating(self, number: int, pid: int, start: float | None) -> None:
        deadline = time.monotonic() + 120
        while start is not None and time.monotonic() < deadline:
            now = cpu_seconds(pid)
            if now is None:
                break
            if now - start >= CPU_IN_EVALUATION:
                self._kill(number, "in_evaluation", pid)
                return
            time.sleep(0.01)
        self.missed.append(f"trial {number}: its worker was not seen evaluating (pid {pid})")


def _spec():
    return parse_sweep(
        tiny_sweep(
            space={"train.lr": {"type": "categorical", "choices": [*KILL_AT, DIVERGES]}},
            sampler={"name": "grid", "seed": 0},
            budget={"num_samples": 4, "max_concurrent": 2},
            run={"train": {"epochs": 3}, "eval": {"grid": GRID, "batched": False}},
            checkpoint={"every": 2, "keep": 2},
            failure={"max_failures": 1},
        )
    )


@pytest.fixture(scope="module")
def swept(ray_session, tmp_path_factory):
    spec = _spec()
    root = tmp_path_factory.mktemp("faults")
    whole = run_sweep(spec, root / "whole")
    killer = KillWorkers()
    faulted = run_sweep(spec, root / "faulted", callbacks=[killer])
    return spec, root, whole, faulted, killer


def _by_lr(trials: pd.DataFrame, lr: float) -> pd.Series:
    (row,) = trials[trials["param.train.lr"] == lr].to_dict("records")
    return pd.Series(row)


def test_each_killed_trial_ends_as_if_never_stopped(swept):
    spec, root, whole, faulted, killer = swept
    assert not killer.missed, killer.missed
    assert {k["point"] for k in killer.killed.values()} == set(KILL_AT.values()), killer.killed
    # the seeded grid hands out the same values under the same numbers, killed or not
    key = ["trial", "param.train.lr"]
    pd.testing.assert_frame_equal(whole.trials[key], faulted.trials[key])
    rows_whole = pd.read_parquet(root / "whole" / "rows.parquet")
    rows_faulted = pd.read_parquet(root / "faulted" / "rows.parquet")
    for lr in KILL_AT:
        a, b = _by_lr(whole.trials, lr), _by_lr(faulted.trials, lr)
        assert a["status"] == b["status"] == "complete", (lr, b["failure_reason"])
        for k in spec.keys:
            assert a[k] == b[k], (lr, k)
        n = int(a["trial"])
        pd.testing.assert_frame_equal(
            rows_whole[rows_whole["trial"] == n].reset_index(drop=True),
            rows_faulted[rows_faulted["trial"] == n].reset_index(drop=True),
        )
    # the whole file too, trial by trial (it lists the trials in the order Ray returns them)
    in_order = lambda rows: rows.sort_values("trial", kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(in_order(rows_whole), in_order(rows_faulted))


def test_each_retry_continued_from_where_its_worker_died(swept):
    """Per point, from the reports the driver received: what the killed worker reported, and
    where its retry took over (Ray's result.json is no witness: a retried trial's file is copied
    back from storage's last sync, which may lack the killed attempt's last lines)."""
    _, _, _, _, killer = swept
    for number, kill in killer.killed.items():
        seen = killer.seen[number]
        before = [it for it, _, pid, _ in seen if pid == kill["pid"]]
        retry = [(it, since, status) for it, since, pid, status in seen if pid != kill["pid"]]
        statuses = [status for _, _, pid, status in seen if pid == kill["pid"]]
        assert "complete" not in statuses, "the killed worker's final report reached the driver"
        *_, (last, since, status) = retry
        assert status == "complete" and last == 6, seen
        if kill["point"] == "before_checkpoint":  # no checkpoint: the retry started over
            assert before == [1] and since == 6, seen
        elif kill["point"] == "after_checkpoint":  # from the checkpoint of representation epoch 2
            assert before == [1, 2] and since == 4, seen
        else:  # from the last training epoch's checkpoint: the retry only evaluated again
            assert before == [1, 2, 3, 4, 5] and since == 1, seen
        assert [it for it, _, _ in retry] == list(range(7 - since, 7)), seen


def test_the_records_hold_each_trial_once_and_none_running(swept):
    spec, root, _, faulted, _ = swept
    out = root / "faulted"
    trials = assert_recorded_once(out, spec.name, spec.keys)
    assert len(trials) == 4 and (trials["status"] == "complete").sum() == 3
    client = MlflowClient(tracking_uri=faulted.tracking_uri)
    exp = client.get_run(faulted.parent_run_id).info.experiment_id
    for lr in KILL_AT:
        (child,) = client.search_runs([exp], f"params.`train.lr` = '{lr}'")
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "representation/loss")]
        assert steps == [1, 2, 3], f"lr {lr}: an epoch logged twice after the retry"


def test_a_diverging_trial_fails_with_its_reason_and_stays_off_the_front(swept):
    spec, root, _, faulted, killer = swept
    out = root / "faulted"
    bad = _by_lr(faulted.trials, DIVERGES)
    number = int(bad["trial"])
    assert bad["status"] == "failed" and "loss became nan" in bad["failure_reason"]
    assert number not in killer.killed
    others = faulted.trials[faulted.trials["trial"] != number]
    assert (others["status"] == "complete").all()
    on_disk = pd.read_parquet(out / "trials.parquet")
    assert on_disk.loc[on_disk["trial"] == number, "failure_reason"].item() == bad["failure_reason"]
    assert on_disk.loc[on_disk["trial"] == number, "pareto_rank"].item() == 0  # not ranked
    assert number not in set(pd.read_parquet(out / "front.parquet")["trial"])
    assert number not in set(faulted.front["trial"])
    rows = pd.read_parquet(out / "rows.parquet")
    assert number not in set(rows["trial"])
    # its own end, not a crash: one report, never retried
    assert [status for *_, status in killer.seen[number]] == ["failed"]

    study = load_study(out, spec.name)
    assert study.trials[number].state == optuna.trial.TrialState.FAIL
    assert number not in {t.number for t in study.best_trials}
    client = MlflowClient(tracking_uri=faulted.tracking_uri)
    exp = client.get_run(faulted.parent_run_id).info.experiment_id
    (child,) = client.search_runs([exp], f"tags.trial_number = '{number}'")
    assert child.info.status == "FAILED"
    assert child.data.tags["trial_status"] == "failed" and child.data.tags["pareto_rank"] == "none"
    assert child.data.tags["failure_reason"] == bad["failure_reason"]
