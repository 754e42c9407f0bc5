"""Optuna behind Ray Tune, with the two things a Pareto sweep needs that OptunaSearch lacks.

1. Each trial's config carries its Optuna trial number (`trial_number`), the name users pick by.
2. After a resume, a trial Optuna handed out but Ray never recorded (the driver died between
   the two) is handed out again, with its number and sampled values, instead of being left
   RUNNING in the study while a new trial takes its place. The sampler restarts with a seed
   that counts the study's trials, so it does not repeat the draws it made before the
   snapshot Ray restored (which would hand out the same values twice).
3. Only a fully trained and evaluated trial is told to Optuna as COMPLETE. A trial that ASHA
   stopped early reaches `on_trial_complete` with partial values; stock OptunaSearch would tell
   a list of Nones (which Optuna refuses, leaving the trial RUNNING) — here it is PRUNED, and a
   trial whose loss diverged is FAIL. Neither ever enters the Pareto front.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from optuna.trial import Trial, TrialState
from ray.tune.search.optuna import OptunaSearch

from robustmm.tune.trainable import NUMBER_KEY


class ParetoOptunaSearch(OptunaSearch):
    _restored = False

    def __init__(self, *args: Any, reseed: Callable[[int], Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reseed = reseed  # offset -> the spec's sampler, seeded with seed + offset

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self._restored = True
        if self._reseed is not None:
            self._sampler = self._ot_study.sampler = self._reseed(len(self._ot_study.trials))

    def _adopt_orphan(self, trial_id: str) -> None:
        known = {t.number for t in self._ot_trials.values()}
        running = self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        orphans = sorted((t for t in running if t.number not in known), key=lambda t: t.number)
        if orphans:
            self._ot_trials[trial_id] = Trial(self._ot_study, orphans[0]._trial_id)
        else:
            self._restored = False

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self._restored and trial_id not in self._ot_trials:
            self._adopt_orphan(trial_id)
        params = super().suggest(trial_id)
        if isinstance(params, dict):
            params[NUMBER_KEY] = self._ot_trials[trial_id].number
        return params

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        values = [(result or {}).get(m) for m in metrics]
        complete = (
            not error
            and (result or {}).get("trial_status") == "complete"
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
        )
        if complete:
            super().on_trial_complete(trial_id, result, error)
            return
        failed = error or (result or {}).get("trial_status") == "failed"
        state = TrialState.FAIL if failed else TrialState.PRUNED
        try:
            self._ot_study.tell(self._ot_trials[trial_id], None, state=state)
        except RuntimeError as e:
            # GridSampler calls Study.stop() once the grid is used up, which Optuna refuses
            # outside study.optimize(); the trial's state is stored before that.
            if "Study.stop" not in str(e):
                raise
        self._completed_trials.add(trial_id)
