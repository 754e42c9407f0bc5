"""A Ray Tune searcher over a plain Optuna study (ask/tell), for multi-objective Pareto sweeps.

The study in the sweep's storage is the single source of truth for trial numbers and states;
the searcher keeps only which Ray trial holds which Optuna trial number (that map travels in
Ray's searcher checkpoint). It uses the public APIs of both libraries only: `ray.tune.search.
Searcher`, and `optuna.create_study`, `Study.ask`/`Study.tell`, `Trial.suggest_*` and the
documented `optuna.storages.BaseStorage` methods. What it guarantees:

1. Each trial's config carries its Optuna trial number (`trial_number`), the name users pick by.
2. After a resume, a trial Optuna handed out but Ray never recorded (the driver died between
   the two) is handed out again, with its number and sampled values, instead of being left
   RUNNING in the study while a new trial takes its place: on restore it goes back to the
   study's queue (WAITING), and the next `ask` pops it before any new trial is created. The
   sampler restarts with a seed that counts the study's trials, so it does not repeat the
   draws it made before the snapshot Ray restored (which would hand out the same values twice).
   A sweep that stopped put its open trials in the queue itself (`stop_open`); those a restored
   Ray trial still holds are taken back out (`take_back`), the rest are handed out again.
3. Only a fully trained and evaluated trial (`trial_status: complete`, every objective finite)
   is told to Optuna as COMPLETE. A trial that ASHA stopped early ends with partial values and
   is PRUNED; a trial whose loss diverged (`trial_status: failed`) or that errored is FAIL.
   Neither ever enters the Pareto front. A trial the study already holds as finished (Ray
   re-ran it after a resume) is not told twice.
4. What Optuna's own tools show reads as the sweep does: the study's metric names are the
   objectives' keys (set on an older study too when it is opened), and each trial's user
   attributes say where the rest of it lives (`links`: its MLflow run, its grid rows), set from
   its first result and again just before it is told, while Optuna still lets them change.

One searcher drives one study: a second process asking from the same study at the same time
would have its running trials taken for orphans on a restore.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import Trial, TrialState
from ray.tune.search import Searcher

from robustmm.tune.trainable import NUMBER_KEY

log = logging.getLogger(__name__)

Define = Callable[[Trial], Mapping[str, Any]]
"""Define-by-run: suggests a trial's values through `trial.suggest_*`, returns them by name."""
MakeSampler = Callable[[int], optuna.samplers.BaseSampler]
"""offset -> the sweep's sampler, seeded with its seed + offset."""
Told = tuple[TrialState, list[float] | None]
Links = Callable[[int, bool], Mapping[str, Any]]
"""(trial number, whether it ended complete) -> user attributes naming where the trial lives."""
CONFIG_ATTR = "robustmm.config"  # a trial's values as handed to Ray (user attribute)
STOPPED_ATTR = "robustmm.stopped"  # why a trial went back to the queue


def directions(modes: Sequence[str]) -> list[str]:
    return ["minimize" if m == "min" else "maximize" for m in modes]


def study_id(storage: BaseStorage, study_name: str) -> int | None:
    try:
        return storage.get_study_id_from_name(study_name)
    except KeyError:  # not created yet
        return None


def trial_numbers(storage: BaseStorage, study_name: str, states: tuple[TrialState, ...] | None = None) -> list[int]:
    """The numbers of the study's trials (in the given states); none if there is no study yet."""
    sid = study_id(storage, study_name)
    return [] if sid is None else [t.number for t in storage.get_all_trials(sid, deepcopy=False, states=states)]


def requeue(storage: BaseStorage, study_name: str, owned: set[int]) -> list[int]:
    """Put the study's RUNNING trials that no Ray trial owns back in its queue (WAITING), where
    `Study.ask` finds them first, with their numbers and the values already suggested."""
    orphans = sorted(set(trial_numbers(storage, study_name, (TrialState.RUNNING,))) - owned)
    sid = study_id(storage, study_name)
    for number in orphans:
        storage.set_trial_state_values(storage.get_trial_id_from_study_id_trial_number(sid, number), TrialState.WAITING)
    return orphans


def stop_open(storage: BaseStorage, study_name: str, reason: str) -> list[int]:
    """The sweep stopped (an error, a signal): its RUNNING trials go back to the study's queue
    (WAITING, with the reason in `robustmm.stopped`), so no trial is left RUNNING for good and
    `--resume` runs each again under its own number. Optuna has no state for "interrupted", and a
    FAIL is final: a trial that never ended is not one that failed."""
    sid = study_id(storage, study_name)
    numbers = trial_numbers(storage, study_name, (TrialState.RUNNING,))
    for number in numbers:
        trial_id = storage.get_trial_id_from_study_id_trial_number(sid, number)
        storage.set_trial_user_attr(trial_id, STOPPED_ATTR, reason)
        storage.set_trial_state_values(trial_id, TrialState.WAITING)
    return numbers


def take_back(storage: BaseStorage, study_name: str, owned: set[int]) -> None:
    """Trials a restored Ray trial still holds but a stopped sweep put back in the queue are
    RUNNING again (so `ask` does not hand them out a second time)."""
    sid = study_id(storage, study_name)
    for number in sorted(set(trial_numbers(storage, study_name, (TrialState.WAITING,))) & owned):
        storage.set_trial_state_values(storage.get_trial_id_from_study_id_trial_number(sid, number), TrialState.RUNNING)


def outcome(result: Mapping[str, Any] | None, metrics: Sequence[str], error: bool) -> Told:
    """How a trial's last result is told to Optuna: COMPLETE with its values, else PRUNED or FAIL."""
    result = result or {}
    values = [result.get(m) for m in metrics]
    finite = all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
    if not error and result.get("trial_status") == "complete" and finite:
        return TrialState.COMPLETE, [float(v) for v in values]
    if error or result.get("trial_status") == "failed":
        return TrialState.FAIL, None
    return TrialState.PRUNED, None


class ParetoOptunaSearch(Searcher):
    """Asks the study for each Ray trial's values, tells it how each trial ended."""

    def __init__(
        self,
        define: Define,
        *,
        metric: Sequence[str],
        mode: Sequence[str],
        study_name: str,
        storage: str | Callable[[], str],
        make_sampler: MakeSampler,
        links: Links | None = None,
    ) -> None:
        super().__init__(metric=list(metric), mode=list(mode))
        self._define = define
        self._study_name = study_name
        self._storage = storage  # a URL, or a function giving it (the active sweep folder's: relocatable)
        self._make_sampler = make_sampler
        self._links = links  # a module-level function (pickled by name), or None
        self._linked: set[str] = set()  # Ray trial ids whose links are set (not saved: idempotent)
        self._numbers: dict[str, int] = {}  # Ray trial id -> Optuna trial number, until told
        self._study: optuna.Study | None = None
        self._opened: BaseStorage | None = None  # the open study's storage
        self._open(RDBStorage(self._storage_url))

    @property
    def _storage_url(self) -> str:
        return self._storage() if callable(self._storage) else self._storage

    @property
    def study(self) -> optuna.Study:
        return self._study if self._study is not None else self._open(RDBStorage(self._storage_url))

    @property
    def _store(self) -> BaseStorage:
        """The open study's storage (the study is opened first when it is not: unpickled)."""
        if self._study is None or self._opened is None:
            self._open(RDBStorage(self._storage_url))
        return self._opened  # type: ignore[return-value]  (set by _open)

    def _open(self, storage: BaseStorage) -> optuna.Study:
        """Create or load the study; its sampler is seeded with seed + the trials it holds."""
        self._opened = storage
        self._study = optuna.create_study(
            storage=storage,
            study_name=self._study_name,
            directions=directions(self.mode),
            sampler=self._make_sampler(len(trial_numbers(storage, self._study_name))),
            pruner=optuna.pruners.NopPruner(),
            load_if_exists=True,
        )
        if self._study.metric_names != list(self.metric):  # a new study, or one made before they were set
            with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self._study.set_metric_names(list(self.metric))
        return self._study

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        trial = self.study.ask()
        values = dict(self._define(trial))
        trial.set_user_attr(CONFIG_ATTR, values)
        self._numbers[trial_id] = trial.number
        return {**values, NUMBER_KEY: trial.number}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if trial_id not in self._linked and trial_id in self._numbers:
            self._link(self._numbers[trial_id], complete=False)
            self._linked.add(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        number = self._numbers.pop(trial_id, None)
        self._linked.discard(trial_id)
        if number is None:  # already told, or never ours
            return
        state, values = outcome(result, self.metric, error)
        self._link(number, complete=state == TrialState.COMPLETE)
        try:
            self.study.tell(number, values, state=state, skip_if_finished=True)
        except RuntimeError as e:
            # GridSampler calls Study.stop() once the grid is used up, which Optuna refuses
            # outside study.optimize(); the trial's state is stored before that.
            if "Study.stop" not in str(e):
                raise

    def _link(self, number: int, complete: bool) -> None:
        """Set the trial's links as user attributes, unless it is already finished (Optuna
        refuses to change a finished trial; it got them when it ended). A link that cannot be
        found (the tracking store is unreachable) is logged, never a reason to stop the sweep."""
        links = self._links
        if links is None:
            return
        storage = self._store
        try:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id(storage, self._study_name), number)
            if storage.get_trial(trial_id).state.is_finished():
                return
            for key, value in links(number, complete).items():
                storage.set_trial_user_attr(trial_id, key, value)
        except Exception as e:
            log.warning("could not link trial %d of the study to its runs: %s: %s", number, type(e).__name__, e)

    def get_state(self) -> dict[str, Any]:
        return {"numbers": dict(self._numbers)}

    def set_state(self, state: dict[str, Any]) -> None:
        """Take Ray's saved map, re-queue the study's orphans, reopen the study (reseeded)."""
        self._numbers = {str(k): int(v) for k, v in state["numbers"].items()}
        storage = RDBStorage(self._storage_url)
        owned = set(self._numbers.values())
        requeue(storage, self._study_name, owned)
        take_back(storage, self._study_name, owned)
        self._open(storage)

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(json.dumps(self.get_state()))

    def restore(self, checkpoint_path: str) -> None:
        self.set_state(json.loads(Path(checkpoint_path).read_text()))

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (Ray keeps the searcher in its experiment) without the open study."""
        return {**self.__dict__, "_study": None, "_opened": None, "_linked": set()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"_links": None, "_opened": None, "_linked": set(), **state})  # older pickles lack them
