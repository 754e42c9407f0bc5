"""A trial whose worker dies mid-training is retried from its last checkpoint and ends with the
same numbers as a trial that never stopped."""

from __future__ import annotations

import json
import os
import signal

import pandas as pd
import pytest
from ray import tune

from robustmm.tune.runner import run_sweep
from robustmm.tune.space import parse_sweep

from sweep_helpers import tiny_sweep

pytestmark = pytest.mark.slow


class KillWorkerOnce(tune.Callback):
    """SIGKILL the trial's worker process right after its first checkpoint is persisted."""

    def __init__(self) -> None:
        self.killed: list[int] = []

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        if not self.killed:
            pid = int(trial.last_result["pid"])
            self.killed.append(pid)
            os.kill(pid, signal.SIGKILL)


def _one_trial_sweep():
    return parse_sweep(
        tiny_sweep(
            space={"model.tau": {"type": "categorical", "choices": [0.2]}},
            sampler={"name": "grid", "seed": 0},
            budget={"num_samples": 1, "max_concurrent": 1},
            run={"train": {"epochs": 3}},
        )
    )


def test_retried_trial_equals_uninterrupted(ray_session, tmp_path):
    spec = _one_trial_sweep()
    whole = run_sweep(spec, tmp_path / "whole")
    killer = KillWorkerOnce()
    retried = run_sweep(spec, tmp_path / "retried", callbacks=[killer])
    assert killer.killed, "the worker was never killed"
    a, b = whole.trials.iloc[0], retried.trials.iloc[0]
    assert a["status"] == b["status"] == "complete"
    for key in spec.keys:
        assert a[key] == b[key]
    rows_a = pd.read_parquet(tmp_path / "whole" / "rows.parquet")
    rows_b = pd.read_parquet(tmp_path / "retried" / "rows.parquet")
    pd.testing.assert_frame_equal(rows_a, rows_b)
    # it continued from a checkpoint: fewer reports since the restore than in all
    (result_file,) = (tmp_path / "retried" / "ray" / spec.name).glob("*/result.json")
    last = json.loads(result_file.read_text().splitlines()[-1])
    assert 0 < last["iterations_since_restore"] < last["training_iteration"]
