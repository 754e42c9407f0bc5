"""Stopping a sweep mid-way on purpose, and reading back what it left (imported by the fault tests)."""

from __future__ import annotations

import errno
from pathlib import Path

import optuna
from mlflow import MlflowClient
from ray import tune


class StopAt(tune.Callback):
    """Raise `error` on the first result of trial `number`, once; `before` runs first (e.g. to
    truncate Ray's snapshot as a full disk would). Never restored with a resumed experiment."""

    def __init__(self, number: int, error: BaseException, before=None) -> None:
        self.number, self.error, self.before = number, error, before

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if trial.config.get("trial_number") == self.number and self.error is not None:
            error, self.error = self.error, None
            if self.before is not None:
                self.before()
            raise error

    def __getstate__(self):  # a resumed sweep must not get it back from Ray's snapshot
        return {"number": self.number, "error": None, "before": None}


def disk_full(path: Path) -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", str(path))


def study_states(out: Path, name: str) -> dict[int, str]:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'optuna.db'}")
    return {t.number: t.state.name for t in study.trials}


def study_values(out: Path, name: str) -> dict[int, list[float]]:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'optuna.db'}")
    return {t.number: t.values for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}


def mlflow_runs(out: Path, name: str) -> tuple[list, list]:
    """(parents, children) of the sweep's MLflow experiment in the folder's own store."""
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    parents = [r for r in runs if r.data.tags.get("robustmm.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("robustmm.kind") == "trial"]
    return parents, children


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under `root`: relative path -> (size, mtime in ns)."""
    files = (p for p in sorted(root.rglob("*")) if p.is_file())
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in files}
