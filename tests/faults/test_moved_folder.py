"""Sweep folders are relocatable: sweep.json names nothing of the folder by absolute path, and a
copy of a stopped sweep resumes into itself — its own MLflow store and artifacts, its own Optuna
study and Ray experiment — leaving the original untouched, with no finished trial run again."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from robustmm.errors import SweepStopped
from robustmm.tune.runner import run_sweep
from robustmm.tune.space import parse_sweep

from sweep_helpers import tiny_sweep
from sweep_stops import StopAt, mlflow_runs, study_states, study_values, tree

pytestmark = pytest.mark.slow

N = 2


def test_a_copied_sweep_resumes_into_the_copy(ray_session, tmp_path):
    spec = parse_sweep(tiny_sweep(budget={"num_samples": N, "max_concurrent": 1}))
    original = tmp_path / "original"
    with pytest.raises(SweepStopped, match="unexpected error .*RuntimeError: a crash"):
        run_sweep(spec, original, callbacks=[StopAt(1, RuntimeError("a crash"))])
    state = json.loads((original / "sweep.json").read_text())
    assert str(tmp_path) not in json.dumps(state)  # nothing of the folder by absolute path

    values_before = study_values(original, spec.name)
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(original, copy)
    (copy / ".sweep.lock").unlink(missing_ok=True)
    before = tree(original)
    said = []
    result = run_sweep(spec, copy, resume=True, say=said.append)
    assert not result.interrupted
    assert tree(original) == before, "resuming the copy wrote into the original"
    # Ray's search state names the original's storage (where it would put new trials), so the
    # study carries on in a new Ray experiment in the copy: trial 0 stands, trial 1 runs again
    assert any("cannot be restored (it was saved in another place" in line for line in said), said
    assert any("MLflow artifacts are now kept in" in line for line in said), said

    trials = pd.read_parquet(copy / "trials.parquet")
    assert sorted(trials["trial"]) == list(range(N)) and (trials["status"] == "complete").all()
    assert study_states(copy, spec.name) == dict.fromkeys(range(N), "COMPLETE")
    assert study_values(copy, spec.name)[0] == values_before[0]
    parents, children = mlflow_runs(copy, spec.name)
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert sorted(c.info.status for c in children) == ["FINISHED"] * N
    artifacts = (copy / "mlartifacts").as_uri()
    assert all(r.info.artifact_uri.startswith(artifacts) for r in parents + children)
    (front,) = [p for p in parents]
    assert (copy / "mlartifacts" / front.info.run_id / "artifacts" / "pareto" / "front.md").is_file()
