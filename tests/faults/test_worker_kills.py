"""Faults inside trials, in one sweep: a trial's worker SIGKILLed at each of three points of its
run (tests/faults/injection.py), and a trial whose loss turns NaN.

Four trials on a grid over `train.lr`, two at a time, a checkpoint every 2 epochs (3
representation + 2 classifier epochs: checkpoints after representation epochs 2 and 3 and
classifier epoch 2). The same sweep is run first without kills, as the reference; then the
worker of its lr-0.001 trial is killed before any checkpoint, that of lr 0.002 right after its
first checkpoint, that of lr 0.003 while it evaluates the grid (PGD with 20 steps: about a
second of CPU; the kill comes 0.2 s in). The fourth trial (lr 1e6) diverges at its second step.
Each retried trial ends with the reference's objectives and grid rows, and the sweep's records
hold each trial once (Optuna, MLflow, trials.parquet), none left RUNNING.
"""

from __future__ import annotations

import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient

from robustmm.tune.runner import run_sweep
from robustmm.tune.space import parse_sweep

from fault_checks import assert_recorded_once, load_study
from injection import POINTS, KillWorkers, retry_took_over
from sweep_helpers import tiny_sweep

pytestmark = pytest.mark.slow

# train.lr of each trial -> where its worker is killed; DIVERGES is never killed, it fails by itself
KILL_AT = {0.001: "before_checkpoint", 0.002: "after_checkpoint", 0.003: "in_evaluation"}
DIVERGES = 1e6
LAST_EPOCH = ("classifier", 2)  # the last training epoch's report; its checkpoint comes with it
GRID = [
    {"attack": "missing", "targets": "each"},
    {"attack": "pgd", "targets": "each", "eps": [0.1, 0.2], "alpha": 0.05, "steps": 20},
]


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
    numbers = dict(zip(whole.trials["param.train.lr"], whole.trials["trial"], strict=True))
    killer = KillWorkers({int(numbers[lr]): point for lr, point in KILL_AT.items()}, LAST_EPOCH)
    faulted = run_sweep(spec, root / "faulted", callbacks=[killer])
    return spec, root, whole, faulted, killer


def _by_lr(trials: pd.DataFrame, lr: float) -> pd.Series:
    (row,) = trials[trials["param.train.lr"] == lr].to_dict("records")
    return pd.Series(row)


def test_each_killed_trial_ends_as_if_never_stopped(swept):
    spec, root, whole, faulted, killer = swept
    assert not killer.missed, killer.missed
    assert sorted(k["point"] for k in killer.killed.values()) == sorted(POINTS), killer.killed
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
    expected = {  # iterations the killed worker reported, iterations its retry reported
        "before_checkpoint": ([1], [1, 2, 3, 4, 5, 6]),  # no checkpoint: the retry started over
        "after_checkpoint": ([1, 2], [3, 4, 5, 6]),  # from representation epoch 2's checkpoint
        "in_evaluation": ([1, 2, 3, 4, 5], [6]),  # from the last training epoch's: evaluation only
    }
    for number, kill in killer.killed.items():
        got = retry_took_over(kill, killer.seen[number])
        assert not got["killed_final_arrived"], "the killed worker's final report reached the driver"
        assert got["retry_status"] == "complete", got
        assert (got["killed_reported"], got["retry_iterations"]) == expected[kill["point"]], (kill, got)
        assert got["since_restore"] == len(got["retry_iterations"]), got


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
