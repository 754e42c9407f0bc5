"""One record per ended trial, written by the driver into the sweep folder (`records/`).

With the Optuna study — the source of truth for which trials exist, their numbers and states —
the records make the trials table: how each trial ended (status, reason, objectives, timing,
values) and its grid rows. They are written the moment a trial ends, atomically, and do not
depend on Ray's experiment state, so a sweep whose Ray state was lost (a full disk, a truncated
snapshot) still knows every trial it finished.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from ray import tune

from robustmm.objectives import Objective
from robustmm.results import write_atomic, write_text
from robustmm.tracking import Tracker
from robustmm.tune import sweep_folder
from robustmm.tune.callbacks import trial_number, trial_outcome, trial_params
from robustmm.tune.space import SWEEP_SPLIT
from robustmm.tune.trial_checkpoint import read_rows

MLFLOW_RUN_ATTR = "robustmm.mlflow_run_id"  # a trial's MLflow child run (Optuna user attribute)
ROWS_ATTR = "robustmm.rows"  # where a complete trial's grid rows are, relative to the sweep folder


def _path(root: Path, number: int, suffix: str) -> Path:
    return root / f"trial-{number:04d}{suffix}"


def rows_path(number: int) -> str:
    """A trial's grid rows relative to its sweep folder (right wherever the folder is moved)."""
    return _path(Path(sweep_folder.RECORDS), number, ".rows.parquet").as_posix()


def trial_links(number: int, complete: bool) -> dict[str, str]:
    """What the study's trial `number` keeps as user attributes to find the rest of it: its
    MLflow child run id (once the run exists) and, for a complete trial, its rows' path. Reads
    the active sweep folder, so it is pickled by name with the searcher."""
    folder = sweep_folder.active()
    links: dict[str, str] = {}
    run_id = _tracker(folder.tracking_uri, folder.experiment).find_child(folder.parent_run_id, str(number))
    if run_id is not None:
        links[MLFLOW_RUN_ATTR] = run_id
    if complete:
        links[ROWS_ATTR] = rows_path(number)
    return links


@functools.lru_cache(maxsize=4)
def _tracker(uri: str, experiment: str) -> Tracker:
    return Tracker(uri, experiment)


def write_record(root: Path, record: dict[str, Any], rows: pd.DataFrame | None) -> None:
    """Store a trial's record (and rows): rows first, so a record never names missing rows."""
    root.mkdir(parents=True, exist_ok=True)
    number = int(record["trial"])
    if rows is not None:
        write_atomic(_path(root, number, ".rows.parquet"), lambda tmp: rows.to_parquet(tmp, index=False))
    write_text(_path(root, number, ".json"), json.dumps(record, default=_plain) + "\n")


def read_records(root: Path) -> dict[int, tuple[dict[str, Any], pd.DataFrame | None]]:
    """Trial number -> (record, rows or None) for every record in `root`."""
    found: dict[int, tuple[dict[str, Any], pd.DataFrame | None]] = {}
    for path in sorted(root.glob("trial-*.json")) if root.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # unreadable: the study's state stands in for it
        number = int(record["trial"])
        rows_path = _path(root, number, ".rows.parquet")
        rows = pd.read_parquet(rows_path) if rows_path.is_file() else None
        found[number] = (record, rows)
    return found


def trial_record(trial: Any, objectives: list[Objective], errored: bool = False) -> dict[str, Any]:
    """The record of a Tune trial that has ended."""
    status, reason = trial_outcome(trial, ended=True, errored=errored)
    metrics = trial.last_result or {}
    record: dict[str, Any] = {
        "trial": trial_number(trial),
        "trial_id": trial.trial_id,
        "status": status,
        "failure_reason": reason,
        "split": SWEEP_SPLIT,
    }
    for o in objectives:
        value = metrics.get(o.key) if status == "complete" else None
        record[o.key] = float(value) if isinstance(value, (int, float)) else math.nan
    for k in ("train_seconds", "eval_seconds"):
        record[k] = float(metrics.get(k, math.nan))
    record["params"] = trial_params(trial)
    return record


class RecordCallback(tune.Callback):
    """Writes each ended trial's record into the active sweep folder (driver side)."""

    def __init__(self, objectives: list[Objective]) -> None:
        self.objectives = list(objectives)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trial, errored=True)

    def _write(self, trial: Any, errored: bool = False) -> None:
        if trial_number(trial) is None:
            return
        record = trial_record(trial, self.objectives, errored)
        rows = read_rows(trial.checkpoint) if record["status"] == "complete" and trial.checkpoint else None
        write_record(sweep_folder.records_dir(), record, rows)


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else str(v)
