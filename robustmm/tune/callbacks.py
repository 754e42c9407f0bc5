"""Driver-side Tune callbacks: MLflow child runs per trial, and one progress line per event.

Both run on the driver only, so a local SQLite MLflow store has a single writer. They are
pickled with the experiment (Tuner.restore brings them back), so they keep only plain settings
and re-open their MLflow client lazily.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ray import tune

from robustmm.objectives import Objective
from robustmm.tracking import NOTE_TAG, Tracker
from robustmm.tune.mlflow_views import ROWS_TABLE, cell_table, trial_note, trial_settings
from robustmm.tune.space import SWEEP_SPLIT, SweepSpec
from robustmm.tune.trainable import NUMBER_KEY
from robustmm.tune.trial_checkpoint import read_rows

log = logging.getLogger(__name__)

STEP_METRIC = "training_iteration"


def trial_number(trial: Any) -> int | None:
    number = (trial.config or {}).get(NUMBER_KEY)
    return None if number is None else int(number)


def trial_key(trial: Any) -> str:
    """What names a trial's MLflow run: its Optuna number, which survives a resume (Ray's trial
    id does not when the trial was handed out again)."""
    number = trial_number(trial)
    return str(number) if number is not None else trial.trial_id


def trial_params(trial: Any) -> dict[str, Any]:
    return {k: v for k, v in (trial.config or {}).items() if k != NUMBER_KEY}


def trial_outcome(trial: Any, ended: bool = False, errored: bool = False) -> tuple[str, str]:
    """(status, reason): complete, failed (diverged or crashed), pruned (stopped early), running.
    `ended`: the trial is known to be over (a completion callback), though Ray may not yet have
    marked it TERMINATED."""
    result = trial.last_result or {}
    if trial.status == "ERROR" or errored:
        return "failed", _error_text(trial)
    status = result.get("trial_status")
    if status == "complete":
        return "complete", ""
    if status == "failed":
        return "failed", str(result.get("failure_reason", ""))
    if trial.status == "TERMINATED" or ended:
        return "pruned", "stopped early by the scheduler"
    return "running", ""


def _error_text(trial: Any) -> str:
    path = getattr(trial, "error_file", None) or ""
    try:
        text = Path(path).read_text() if path else ""
    except OSError:
        text = ""
    text = text or str(getattr(trial, "error", "") or "")
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else "the trial raised an error"


class TrackingCallback(tune.Callback):
    """One MLflow child run per trial under the sweep's parent run."""

    def __init__(
        self,
        uri: str | Callable[[], str],
        experiment: str,
        parent_id: str,
        objectives: Sequence[Objective],
        spec: SweepSpec | None = None,
        source: Mapping[str, str] | None = None,
    ) -> None:
        # `uri`: a URI, or a function giving it (the active sweep folder's: relocatable, and its
        # credentials are never pickled into Ray's experiment); `spec`: the sweep, for a trial's
        # whole run config as params and its description; `source`: MLflow's source tags
        self.uri, self.experiment, self.parent_id = uri, experiment, parent_id
        self.objectives = list(objectives)
        self.spec, self.source = spec, dict(source or {})
        self._tracker: Tracker | None = None
        self._runs: dict[str, str] = {}
        self._last_step: dict[str, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_tracker=None, _runs={}, _last_step={})
        return state

    @property
    def tracker(self) -> Tracker:
        if self._tracker is None:
            self._tracker = Tracker(self.uri() if callable(self.uri) else self.uri, self.experiment)
        return self._tracker

    def _run(self, trial: Any) -> str:
        run_id = self._runs.get(trial.trial_id)
        if run_id is None:
            number = trial_number(trial)
            name = f"trial-{number:03d}" if number is not None else trial.trial_id
            tags = {
                "trial_number": "" if number is None else str(number),
                "ray_trial_id": trial.trial_id,
                "split": SWEEP_SPLIT,
                **getattr(self, "source", {}),
            }
            spec, values = getattr(self, "spec", None), trial_params(trial)  # None: pickled before either
            if spec is not None:
                tags[NOTE_TAG] = trial_note(spec, number, values)
            run_id, existed = self.tracker.start_child(self.parent_id, trial_key(trial), name, tags)
            self._runs[trial.trial_id] = run_id
            self._last_step[trial.trial_id] = self.tracker.last_step(run_id, STEP_METRIC) if existed else -1
            self.tracker.log_params(run_id, trial_settings(spec, values) if spec is not None else values)
        return run_id

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._run(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        run_id = self._run(trial)
        step = int(result.get(STEP_METRIC, 0))
        if step <= self._last_step.get(trial.trial_id, -1):
            return  # already logged before the sweep was resumed
        self._last_step[trial.trial_id] = step
        # the epoch and the seed are the step's coordinates, not measurements: the step is Ray's
        # training_iteration, the seeds are params
        keep = {k: v for k, v in result.items() if "/" in k or k == STEP_METRIC}
        keep.update({o.key: result[o.key] for o in self.objectives if o.key in result})
        for k in ("train_seconds", "eval_seconds"):
            if k in result:
                keep[k] = result[k]
        self.tracker.log_metrics(run_id, keep, step)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, errored=True)

    def _finish(self, trial: Any, errored: bool = False) -> None:
        run_id = self._run(trial)
        status, reason = trial_outcome(trial, ended=True, errored=errored)
        tags = {"trial_status": status}
        if reason:
            tags["failure_reason"] = reason
        spec = getattr(self, "spec", None)
        if spec is not None:
            result = trial.last_result or {}
            outcome = {"status": status, "failure_reason": reason} | {o.key: result.get(o.key) for o in self.objectives}
            tags[NOTE_TAG] = trial_note(spec, trial_number(trial), trial_params(trial), outcome)
        self.tracker.set_tags(run_id, tags)
        if status == "complete" and trial.checkpoint is not None:
            rows = read_rows(trial.checkpoint)
            if rows is not None:
                self._log_rows(run_id, rows)
        mlflow_status = {"complete": "FINISHED", "failed": "FAILED"}.get(status, "KILLED")
        self.tracker.end(run_id, mlflow_status)

    def _log_rows(self, run_id: str, rows: Any) -> None:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "rows.parquet"
            rows.to_parquet(path, index=False)
            self.tracker.log_artifact(run_id, path)
        self.tracker.log_table(run_id, cell_table(rows), ROWS_TABLE)  # the same cells, as a table the UI shows


class ProgressCallback(tune.Callback):
    """One line per trial event (start, retry, end), and while trials run a line at least every
    `every_s` seconds saying where each one is (stage, epoch, loss): a long epoch or a long
    evaluation still shows the sweep is alive."""

    def __init__(self, objectives: Sequence[Objective], total: int, every_s: float = 10.0, ended: int = 0) -> None:
        # `ended`: trials of the sweep that ended before this Ray experiment (a study carried on)
        self.objectives, self.total, self.every_s, self.ended = list(objectives), total, every_s, ended
        self._reset()
        self.say: Callable[[str], None] = _stderr

    def _reset(self) -> None:
        self._started = time.time()
        self._last_line = time.time()
        self._seen: dict[str, tuple[float, dict]] = {}  # trial id -> (when, its last epoch report)
        self._done_ids: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["say"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("ended", 0)  # pickled before the count existed
        self.every_s = min(self.every_s, 10.0)  # pickled when the default was 30 s
        self._reset()
        self.say = _stderr

    def _name(self, trial: Any) -> str:
        number = trial_number(trial)
        return f"trial {number}" if number is not None else f"trial {trial.trial_id}"

    def _line(self, text: str) -> None:
        self._last_line = time.time()
        self.say(text)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in trial_params(trial).items())
        self._seen[trial.trial_id] = (time.time(), {})
        self._line(f"{self._name(trial)} started ({params})")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get("trial_status") == "running":
            self._seen[trial.trial_id] = (time.time(), result)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.time()
        if now - self._last_line < self.every_s:
            return
        running = [t for t in trials if t.status == "RUNNING"]
        if not running:
            return
        where = "; ".join(self._where(t, now) for t in running)
        self._line(f"{self._finished(trials)}/{self.total} done, {_duration(now - self._started)}: {where}")

    def _where(self, trial: Any, now: float) -> str:
        since, result = self._seen.get(trial.trial_id, (now, {}))
        if not result:
            return f"{self._name(trial)} starting ({_duration(now - since)})"
        stage, epoch, total = result.get("stage", ""), result.get("epoch"), result.get("stage_epochs")
        text = f"{self._name(trial)} {stage} epoch {epoch}" + (f"/{total}" if total else "")
        loss = result.get(f"{stage}/loss")
        if loss is not None:
            text += f" loss {_fmt(loss)}"
        if now - since >= self.every_s:
            text += f" (+{_duration(now - since)})"
        return text

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(f"{self._name(trial)} crashed; retrying from its last checkpoint")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._done(trial, trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._done(trial, trials, errored=True)

    def _finished(self, trials: list) -> int:
        return self.ended + len(self._done_ids | {t.trial_id for t in trials if t.status in ("TERMINATED", "ERROR")})

    def _done(self, trial: Any, trials: list, errored: bool = False) -> None:
        status, reason = trial_outcome(trial, ended=True, errored=errored)
        self._done_ids.add(trial.trial_id)
        self._seen.pop(trial.trial_id, None)
        result = trial.last_result or {}
        if status == "complete":
            values = ", ".join(f"{o.key} {_pct(result.get(o.key))}" for o in self.objectives)
            text = f"complete: {values}"
        else:
            text = f"{status}: {reason}" if reason else status
        self._line(f"{self._name(trial)} {text} [{self._finished(trials)}/{self.total} done]")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _stderr(text: str) -> None:
    print(f"[sweep] {text}", file=sys.stderr, flush=True)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _pct(v: Any) -> str:
    if isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v <= 1:
        return f"{100 * v:.2f} %"
    return _fmt(v)
