"""What a front end hears from a run: the `Reporter` interface and its small adapters."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from robustmm.models.plan import REFERENCE_STAGE_NAMES

if TYPE_CHECKING:
    from robustmm.train.loop import LoopState

# (stage, epoch, metrics) after each epoch: the short form of `Reporter.on_epoch`.
EpochCallback = Callable[[str, int, dict[str, float]], None]


class Reporter:
    """What a front end hears from one run, in this order for every seed: `on_stage` when a stage
    begins (its reported name and epochs), `on_epoch` after each epoch (the epoch's mean metrics,
    and the checkpoint state when one is due, else None), `on_eval` while the grid is evaluated,
    `on_seed_done` with the seed's rows. Every method is optional."""

    def on_stage(self, seed: int, stage: str, total: int) -> None: ...
    def on_epoch(
        self, seed: int, stage: str, epoch: int, metrics: dict[str, float], state: LoopState | None
    ) -> None: ...
    def on_eval(self, seed: int, description: str, done: int, total: int) -> None: ...
    def on_seed_done(self, seed: int, rows: list[dict[str, Any]]) -> None: ...


class Callbacks(Reporter):
    """A Reporter from the short callback `on_epoch(stage, epoch, metrics)` (None: hears nothing)."""

    def __init__(self, on_epoch: EpochCallback | None) -> None:
        self.epoch = on_epoch

    def on_epoch(self, seed: int, stage: str, epoch: int, metrics: dict[str, float], state: LoopState | None) -> None:
        if self.epoch is not None:
            self.epoch(stage, epoch, metrics)


class Renamed(Reporter):
    """A reference pipeline's reports, under the reference's stage names and the run's `seed`
    (the reference trains from a seed of its own)."""

    def __init__(self, inner: Reporter, seed: int) -> None:
        self.inner, self.seed = inner, seed

    def on_stage(self, seed: int, stage: str, total: int) -> None:
        self.inner.on_stage(self.seed, REFERENCE_STAGE_NAMES.get(stage, stage), total)

    def on_epoch(self, seed: int, stage: str, epoch: int, metrics: dict[str, float], state: LoopState | None) -> None:
        self.inner.on_epoch(self.seed, REFERENCE_STAGE_NAMES.get(stage, stage), epoch, metrics, None)


class Saving(Reporter):
    """Hands each checkpoint state to `save` before the reporter hears the epoch."""

    def __init__(self, inner: Reporter, save: Callable[[LoopState], None]) -> None:
        self.inner, self.save = inner, save

    def on_stage(self, seed: int, stage: str, total: int) -> None:
        self.inner.on_stage(seed, stage, total)

    def on_epoch(self, seed: int, stage: str, epoch: int, metrics: dict[str, float], state: LoopState | None) -> None:
        if state is not None:
            self.save(state)
        self.inner.on_epoch(seed, stage, epoch, metrics, state)
