"""What every fault test asks of a sweep folder once the sweep has ended: each trial recorded
once, in the state its row gives, nothing left RUNNING; and the trials' numbers equal to those
of a run that met no fault (imported by the tests in this folder; `census` gives the same as
counts, for bench/faults.py)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from mlflow import MlflowClient

STUDY_STATE = {
    "complete": optuna.trial.TrialState.COMPLETE,
    "failed": optuna.trial.TrialState.FAIL,
    "pruned": optuna.trial.TrialState.PRUNED,
}
RUN_STATUS = {"complete": "FINISHED", "failed": "FAILED", "pruned": "KILLED"}


def load_study(out: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'optuna.db'}")


def assert_recorded_once(out: Path, name: str, keys: Sequence[str]) -> pd.DataFrame:
    """trials.parquet, the Optuna study and the MLflow runs in `out` hold the same trials, each
    number once and in the same state (the study's values = the objectives `keys`), with one
    finished parent run and no run or trial left RUNNING. Returns trials.parquet."""
    trials = pd.read_parquet(out / "trials.parquet")
    numbers = sorted(int(n) for n in trials["trial"])
    assert numbers == list(range(len(trials))), f"trial numbers {numbers}"
    study = load_study(out, name)
    assert sorted(t.number for t in study.trials) == numbers, "the study holds other trials than trials.parquet"
    by_number = {int(r["trial"]): r for r in trials.to_dict("records")}
    for t in study.trials:
        row = by_number[t.number]
        assert t.state == STUDY_STATE[row["status"]], (t.number, t.state, row["status"])
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert t.values == [row[k] for k in keys], t.number

    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    (exp,) = [client.get_experiment_by_name(name)]
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.status for r in runs if r.info.status == "RUNNING"] == [], "an MLflow run left RUNNING"
    parents = [r for r in runs if r.data.tags.get("robustmm.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("robustmm.kind") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(int(c.data.tags["trial_number"]) for c in children) == numbers, "not one MLflow run per trial"
    for c in children:
        row = by_number[int(c.data.tags["trial_number"])]
        assert c.info.status == RUN_STATUS[row["status"]] and c.data.tags["trial_status"] == row["status"]
    return trials


def assert_same_trials(reference: Path, out: Path, numbers: Iterable[int], keys: Sequence[str]) -> None:
    """Trials `numbers` of the sweeps in `reference` and `out` have the same values, status,
    objectives and grid rows (rows.parquet)."""
    ref, got = pd.read_parquet(reference / "trials.parquet"), pd.read_parquet(out / "trials.parquet")
    ref_rows, got_rows = pd.read_parquet(reference / "rows.parquet"), pd.read_parquet(out / "rows.parquet")
    columns = ["trial", "status", *keys, *(c for c in ref.columns if c.startswith("param."))]
    for n in numbers:
        a, b = ref[ref["trial"] == n][columns], got[got["trial"] == n][columns]
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
        pd.testing.assert_frame_equal(
            ref_rows[ref_rows["trial"] == n].reset_index(drop=True),
            got_rows[got_rows["trial"] == n].reset_index(drop=True),
        )


def same_values(reference: Path, out: Path) -> list[int]:
    """The trial numbers that hold the same sampled values in both sweeps."""
    ref, got = pd.read_parquet(reference / "trials.parquet"), pd.read_parquet(out / "trials.parquet")
    params = ["trial", *(c for c in ref.columns if c.startswith("param."))]
    merged = ref[params].merge(got[params], on=params, how="inner")
    return sorted(int(n) for n in merged["trial"])


def census(out: Path, name: str, keys: Sequence[str], reference: Path | None = None) -> dict[str, Any]:
    """The figures of one sweep folder that the fault suite asserts on, as counts (for bench/faults.py):
    trials by status, duplicates and RUNNING leftovers in each record, and, against a `reference`
    folder of the same sweep, how many trials hold the same values and of those how many ended
    with equal objectives and rows."""
    trials = pd.read_parquet(out / "trials.parquet")
    rows = pd.read_parquet(out / "rows.parquet") if (out / "rows.parquet").is_file() else pd.DataFrame()
    study = load_study(out, name)
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    children = [r for r in runs if r.data.tags.get("robustmm.kind") == "trial"]
    child_numbers = [int(c.data.tags["trial_number"]) for c in children]
    repeated_steps = 0
    for c in children:
        steps = [m.step for m in client.get_metric_history(c.info.run_id, "representation/loss")]
        repeated_steps += len(steps) - len(set(steps))
    params = [c for c in trials.columns if c.startswith("param.")]
    figures: dict[str, Any] = {
        "trials": len(trials),
        "status": {str(k): int(v) for k, v in trials["status"].value_counts().items()},
        "duplicates": {
            "trials.parquet numbers": int(trials["trial"].duplicated().sum()),
            "study numbers": len(study.trials) - len({t.number for t in study.trials}),
            "MLflow runs per number": len(child_numbers) - len(set(child_numbers)),
            "sampled values": int(trials[params].round(12).duplicated().sum()),
            "rows.parquet rows": int(rows.duplicated().sum()) if not rows.empty else 0,
            "MLflow epoch steps": repeated_steps,
        },
        "running": {
            "trials.parquet": int(trials["status"].isin(["running", "interrupted"]).sum()),
            "study (RUNNING, WAITING)": sum(
                t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING) for t in study.trials
            ),
            "MLflow runs": sum(r.info.status == "RUNNING" for r in runs),
        },
    }
    try:
        assert_recorded_once(out, name, keys)
        figures["records_agree"] = True
    except AssertionError as e:
        figures["records_agree"] = False
        figures["records_disagree"] = str(e)[:500]
    if reference is not None:
        same = same_values(reference, out)
        equal = []
        for n in same:
            try:
                assert_same_trials(reference, out, [n], keys)
                equal.append(n)
            except AssertionError:
                pass
        figures["same_values_as_reference"] = same
        figures["equal_to_reference"] = equal
    return figures
