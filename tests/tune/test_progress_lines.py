"""The sweep's progress lines: one per trial event, and a heartbeat at least every 10 s naming
each running trial's stage and epoch (ProgressCallback driven by Ray Tune's callback calls)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from robustmm.objectives import parse_objectives
from robustmm.tune import callbacks
from robustmm.tune.callbacks import ProgressCallback
from robustmm.tune.trainable import NUMBER_KEY


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def progress(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(callbacks, "time", SimpleNamespace(time=clock))  # this module's clock only
    cb = ProgressCallback(parse_objectives(["clean_accuracy"]), total=3)
    lines: list[str] = []
    cb.say = lines.append
    return cb, clock, lines


def trial(number: int, status: str = "RUNNING", last_result: dict | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        trial_id=f"id{number}", config={NUMBER_KEY: number, "train.lr": 0.001}, status=status, last_result=last_result
    )


def epoch(stage: str, n: int, of: int, loss: float) -> dict:
    return {"trial_status": "running", "stage": stage, "epoch": n, "stage_epochs": of, f"{stage}/loss": loss}


def test_a_heartbeat_names_each_running_trials_stage_and_epoch(progress):
    cb, clock, lines = progress
    a, b = trial(0), trial(1)
    cb.on_trial_start(0, [a, b], a)
    cb.on_trial_start(0, [a, b], b)
    assert lines == ["trial 0 started (train.lr=0.001)", "trial 1 started (train.lr=0.001)"]
    clock.now += 4
    cb.on_trial_result(0, [a, b], a, epoch("representation", 2, 5, 25.06))
    cb.on_step_end(0, [a, b])
    assert len(lines) == 2  # not yet 10 s since the last line
    clock.now += 6
    cb.on_step_end(0, [a, b])
    assert lines[-1] == "0/3 done, 10 s: trial 0 representation epoch 2/5 loss 25.06; trial 1 starting (10 s)"
    clock.now += 12  # trial 0 has not reported for 18 s: the line says so
    cb.on_step_end(0, [a, b])
    assert lines[-1].startswith("0/3 done, 22 s: trial 0 representation epoch 2/5 loss 25.06 (+18 s)")


def test_every_trial_event_is_one_line_with_the_count(progress):
    cb, clock, lines = progress
    a = trial(0, "TERMINATED", {"trial_status": "complete", "clean_accuracy": 0.85})
    b = trial(1, "PENDING", {})  # Ray puts a crashed trial back to PENDING to retry it
    cb.on_trial_complete(0, [a, b], a)
    cb.on_trial_recover(0, [a, b], b)
    assert lines[0] == "trial 0 complete: clean_accuracy 85.00 % [1/3 done]"
    assert lines[1] == "trial 1 crashed; retrying from its last checkpoint"
    cb.on_step_end(0, [a, b])  # nothing running: no heartbeat
    clock.now += 60
    cb.on_step_end(0, [a, b])
    assert len(lines) == 2


def test_a_restored_callback_beats_at_least_every_10_s(progress):
    cb, _, _ = progress
    cb.every_s = 30.0  # as pickled by an older sweep
    state = cb.__getstate__()
    restored = ProgressCallback.__new__(ProgressCallback)
    restored.__setstate__(state)
    assert restored.every_s == 10.0 and restored.say is callbacks._stderr
