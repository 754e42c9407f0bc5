"""A whole sweep on the session's Ray: trials, the Optuna study, MLflow runs, the Pareto front.

One sweep (the `swept` fixture of conftest.py) covers the three ways a trial can end: complete,
failed and pruned.
"""

from __future__ import annotations

import math

import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient

from robustmm.objectives import compute_objectives
from robustmm.pareto import pareto_ranks
from robustmm.tune.records import MLFLOW_RUN_ATTR, ROWS_ATTR
from robustmm.tune.space import parse_sweep

pytestmark = pytest.mark.slow


def test_every_trial_ends_complete_failed_or_pruned(swept):
    _, out, result = swept
    t = result.trials
    assert len(t) == 8 and sorted(t["trial"]) == list(range(8))
    assert set(t["status"]) <= {"complete", "failed", "pruned"}
    diverged = t[t["param.train.lr"] == 1e30]
    assert (diverged["status"] == "failed").all()
    assert diverged["failure_reason"].str.contains("loss became").all()
    assert (t["status"] == "complete").sum() >= 2, t[["trial", "status", "param.train.lr"]]
    assert (t["status"] == "pruned").sum() >= 1, t[["trial", "status", "param.train.lr"]]
    assert (t["split"] == "validation").all()  # objectives are computed on validation, never on test
    complete = t[t["status"] == "complete"]
    assert complete["clean_accuracy"].between(0, 1).all() and complete["worst_modality_auc_pgd"].between(0, 1).all()
    for name in ("sweep.yaml", "sweep.json", "optuna.db", "mlflow.db", "trials.parquet", "rows.parquet"):
        assert (out / name).is_file(), name
    for name in ("front.md", "front.parquet", "front.png", "front.html"):
        assert (out / name).is_file(), name


def test_study_holds_the_same_trials_and_states(swept):
    raw, out, result = swept
    study = optuna.load_study(study_name=raw["name"], storage=f"sqlite:///{out / 'optuna.db'}")
    states = {tr.number: tr.state for tr in study.trials}
    expected = {"complete": optuna.trial.TrialState.COMPLETE, "failed": optuna.trial.TrialState.FAIL}
    expected["pruned"] = optuna.trial.TrialState.PRUNED
    assert states == {int(r.trial): expected[r.status] for r in result.trials.itertuples()}
    for tr in study.trials:
        if tr.state == optuna.trial.TrialState.COMPLETE:
            row = result.trials[result.trials["trial"] == tr.number].iloc[0]
            assert tr.values == [row["clean_accuracy"], row["worst_modality_auc_pgd"]]


def test_front_from_rows_equals_front_from_study(swept):
    raw, out, result = swept
    rows = pd.read_parquet(out / "rows.parquet")
    assert set(rows["split"]) == {"validation"}
    spec = parse_sweep(raw)
    numbers = sorted(rows["trial"].unique())
    values = np.array([list(compute_objectives(spec.objectives, rows[rows["trial"] == n]).values()) for n in numbers])
    ranks = pareto_ranks(values, spec.modes)
    from_rows = {int(n) for n, r in zip(numbers, ranks, strict=True) if r == 1}
    study = optuna.load_study(study_name=raw["name"], storage=f"sqlite:///{out / 'optuna.db'}")
    from_study = {tr.number for tr in study.best_trials}
    assert from_rows == from_study == set(result.front["trial"])
    pruned_or_failed = set(result.trials.loc[result.trials["status"] != "complete", "trial"])
    assert not from_rows & pruned_or_failed


def test_mlflow_parent_children_and_front_artifacts(swept):
    raw, out, result = swept
    client = MlflowClient(tracking_uri=result.tracking_uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["sampler"] == "grid" and parent.data.tags["mlflow.source.type"] == "LOCAL"
    assert {"command", "objectives"} <= set(parent.data.tags)
    assert parent.data.tags["split"] == "validation"
    arts = {a.path for a in client.list_artifacts(parent.info.run_id, "pareto")}
    assert {"pareto/front.md", "pareto/front.png", "pareto/front.html", "pareto/front.parquet"} <= arts
    exp = parent.info.experiment_id
    children = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 8 and len({c.data.tags["robustmm.trial"] for c in children}) == 8
    by_number = {int(c.data.tags["trial_number"]): c for c in children}
    for r in result.trials.to_dict("records"):
        child = by_number[int(r["trial"])]
        assert child.data.tags["trial_status"] == r["status"]
        assert child.data.tags["split"] == "validation"
        assert float(child.data.params["train.lr"]) == r["param.train.lr"]
        if r["status"] == "complete":
            assert child.info.status == "FINISHED"
            assert child.data.tags["pareto_rank"] == str(int(r["pareto_rank"]))
            assert math.isclose(child.data.metrics["clean_accuracy"], r["clean_accuracy"])
            assert [a.path for a in client.list_artifacts(child.info.run_id)] == ["cells.json", "rows.parquet"]
            history = client.get_metric_history(child.info.run_id, "representation/loss")
            assert [m.step for m in history] == [1, 2]
        else:
            assert child.data.tags["pareto_rank"] == "none"
            assert child.info.status == ("FAILED" if r["status"] == "failed" else "KILLED")
    failed = [c for c in children if c.data.tags["trial_status"] == "failed"]
    assert failed and all("loss became" in c.data.tags["failure_reason"] for c in failed)


def test_study_names_its_objectives_and_links_each_trial(swept):
    raw, out, result = swept
    study = optuna.load_study(study_name=raw["name"], storage=f"sqlite:///{out / 'optuna.db'}")
    assert study.metric_names == parse_sweep(raw).keys == ["clean_accuracy", "worst_modality_auc_pgd"]
    client = MlflowClient(tracking_uri=result.tracking_uri)
    exp = client.get_run(result.parent_run_id).info.experiment_id
    children = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")
    run_of = {int(c.data.tags["trial_number"]): c.info.run_id for c in children}
    for tr in study.trials:
        assert tr.user_attrs[MLFLOW_RUN_ATTR] == run_of[tr.number], tr.number
        if tr.state == optuna.trial.TrialState.COMPLETE:
            rows = pd.read_parquet(out / tr.user_attrs[ROWS_ATTR])  # relative to the sweep folder
            assert len(rows) and set(rows["split"]) == {"validation"}
        else:
            assert ROWS_ATTR not in tr.user_attrs
