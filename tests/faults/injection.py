"""Fault injection from the sweep's driver: a Tune callback that SIGKILLs trials' workers at
chosen points of their run (used by tests/faults/test_worker_kills.py and bench/faults.py).

The points, per trial number:

- `before_checkpoint`: at the trial's first epoch report, when it has no checkpoint yet (its
  retry starts over);
- `after_checkpoint`: right after its first checkpoint was persisted (its retry continues from it);
- `in_evaluation`: while it evaluates the grid after its last training epoch (its retry only
  evaluates again). A function trainable waits inside `tune.report` until the driver asks for
  its next result, so the worker evaluates only once the driver has taken the last epoch's
  checkpoint and returned from its callbacks; the kill therefore waits, bounded, until the
  worker has spent `cpu_in_evaluation` CPU seconds since that checkpoint, i.e. is evaluating
  (the grid must cost more than that).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from ray import tune

from robustmm.tune.callbacks import trial_number

POINTS = ("before_checkpoint", "after_checkpoint", "in_evaluation")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class KillWorkers(tune.Callback):
    """SIGKILL the worker of each trial in `plan` (trial number -> point) once, at its point.
    `last_epoch`: the (stage, epoch) of a trial's last training-epoch report.

    What happened is kept in plain data: `killed[number]` (point, pid, seconds since the sweep
    started), `seen[number]` (every report the driver received: training iteration, iterations
    since the last restore, worker pid, trial status), `missed` (kills that never came)."""

    def __init__(self, plan: dict[int, str], last_epoch: tuple[str, int], cpu_in_evaluation: float = 0.2) -> None:
        unknown = set(plan.values()) - set(POINTS)
        if unknown:
            raise ValueError(f"unknown kill points {sorted(unknown)}; known: {', '.join(POINTS)}")
        self.plan, self.last_epoch, self.cpu_in_evaluation = dict(plan), tuple(last_epoch), cpu_in_evaluation
        self.killed: dict[int, dict[str, Any]] = {}
        self.seen: dict[int, list[tuple[int, int, int, str]]] = {}
        self.missed: list[str] = []
        self._start = time.monotonic()

    def _kill(self, number: int, point: str, pid: int) -> None:
        self.killed[number] = {"point": point, "pid": pid, "at_s": round(time.monotonic() - self._start, 3)}
        os.kill(pid, signal.SIGKILL)

    def _due(self, trial: Any, point: str) -> bool:
        number = trial_number(trial)
        return self.plan.get(number) == point and number not in self.killed

    def on_trial_result(self, iteration, trials, trial, result, **info):
        number, pid = trial_number(trial), int(result["pid"])
        seen = (int(result["training_iteration"]), int(result["iterations_since_restore"]), pid)
        self.seen.setdefault(number, []).append((*seen, str(result.get("trial_status", ""))))
        if self._due(trial, "before_checkpoint") and result["training_iteration"] == 1:
            if trial.checkpoint is not None:
                self.missed.append(f"trial {number} had a checkpoint at its first report")
            self._kill(number, "before_checkpoint", pid)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        number, pid = trial_number(trial), int(trial.last_result["pid"])
        if self._due(trial, "after_checkpoint"):
            self._kill(number, "after_checkpoint", pid)
        elif self._due(trial, "in_evaluation"):
            if (trial.last_result.get("stage"), trial.last_result.get("epoch")) == self.last_epoch:
                start = cpu_seconds(pid)
                threading.Thread(target=self._kill_evaluating, args=(number, pid, start), daemon=True).start()

    def _kill_evaluating(self, number: int, pid: int, start: float | None) -> None:
        deadline = time.monotonic() + 300
        while start is not None and time.monotonic() < deadline:
            now = cpu_seconds(pid)
            if now is None:
                break
            if now - start >= self.cpu_in_evaluation:
                self._kill(number, "in_evaluation", pid)
                return
            time.sleep(0.01)
        self.missed.append(f"trial {number}: its worker (pid {pid}) was not seen evaluating")

    def record(self) -> dict[str, Any]:
        """What happened, as JSON-ready data."""
        return {"plan": self.plan, "killed": self.killed, "seen": self.seen, "missed": self.missed}


def retry_took_over(kill: dict[str, Any], seen: list[tuple[int, int, int, str]]) -> dict[str, Any]:
    """From the driver's reports of one killed trial: the iterations the killed worker reported,
    whether its final report ever arrived, and where the retry took over (its last report's
    iteration and iterations since the restore)."""
    before = [it for it, _, pid, _ in seen if pid == kill["pid"]]
    retry = [(it, since, status) for it, since, pid, status in seen if pid != kill["pid"]]
    last, since, status = retry[-1] if retry else (None, None, None)
    return {
        "killed_reported": before,
        "killed_final_arrived": any(s == "complete" for _, _, pid, s in seen if pid == kill["pid"]),
        "retry_iterations": [it for it, _, _ in retry],
        "retry_status": status,
        "last_iteration": last,
        "since_restore": since,
    }
