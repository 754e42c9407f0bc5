"""A full disk mid-sweep: one line, nothing left RUNNING; after space is freed `--resume` carries
on the same Optuna study — though Ray's snapshot was cut short — with every trial number once
and finished trials not run again.

The full disk is simulated where the driver writes (ENOSPC raised on the driver while Ray's
newest experiment snapshot is truncated, as a write cut short leaves it)."""

from __future__ import annotations

import pandas as pd
import pytest

from robustmm.errors import SweepStopped
from robustmm.tune.runner import run_sweep
from robustmm.tune.space import parse_sweep

from sweep_helpers import tiny_sweep
from sweep_stops import StopAt, disk_full, mlflow_runs, study_states, study_values

pytestmark = pytest.mark.slow

N = 3


def test_disk_full_then_resume_runs_every_trial_once(ray_session, tmp_path):
    spec = parse_sweep(tiny_sweep(budget={"num_samples": N, "max_concurrent": 1}))
    out = tmp_path / "sweep"

    def truncate_ray_snapshot():
        for f in (out / "ray" / spec.name).glob("experiment_state-*.json"):
            f.write_bytes(f.read_bytes()[:100])

    full = StopAt(1, disk_full(out / "ray"), before=truncate_ray_snapshot)
    with pytest.raises(SweepStopped, match="the disk is full .* --resume") as stopped:
        run_sweep(spec, out, callbacks=[full])
    assert len(str(stopped.value).splitlines()) == 1

    states = study_states(out, spec.name)
    assert states == {0: "COMPLETE", 1: "WAITING"}  # trial 1 is back in the queue, not RUNNING
    finished_before = study_values(out, spec.name)
    parents, children = mlflow_runs(out, spec.name)
    assert [p.info.status for p in parents] == ["FAILED"]
    assert parents[0].data.tags["sweep_state"] == "failed" and "disk is full" in parents[0].data.tags["stopped_by"]
    assert sorted(c.info.status for c in children) == ["FINISHED", "KILLED"]

    said = []
    result = run_sweep(spec, out, resume=True, say=said.append)
    assert any("Ray's experiment cannot be restored" in line and "unreadable" in line for line in said), said
    trials = pd.read_parquet(out / "trials.parquet")
    assert sorted(trials["trial"]) == list(range(N)) and (trials["status"] == "complete").all()
    assert not result.interrupted
    assert study_states(out, spec.name) == dict.fromkeys(range(N), "COMPLETE")
    values = study_values(out, spec.name)
    assert values[0] == finished_before[0]  # trial 0 was not run again
    params = trials[[c for c in trials.columns if c.startswith("param.")]].round(12)
    assert not params.duplicated().any()
    rows = pd.read_parquet(out / "rows.parquet")
    assert sorted(rows["trial"].unique()) == list(range(N))

    parents, children = mlflow_runs(out, spec.name)
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert sorted(int(c.data.tags["trial_number"]) for c in children) == list(range(N))
    assert all(c.info.status == "FINISHED" for c in children)
