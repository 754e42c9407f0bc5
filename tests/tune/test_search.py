"""The searcher on its own, driven the way Ray Tune drives it: suggest, on_trial_complete,
save, and a restore into the copy of the searcher Ray pickled when the sweep began."""

from __future__ import annotations

import math
import pickle

import optuna
import pytest

from robustmm.tune.search import ParetoOptunaSearch
from robustmm.tune.space import parse_sweep
from robustmm.tune.trainable import NUMBER_KEY

from sweep_helpers import tiny_sweep

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "model.activation": {"type": "categorical", "choices": ["relu", "gelu"]},
    "model.tau": {"type": "float", "low": 0.05, "high": 0.5, "when": {"model.activation": "gelu"}},
    "train.batch_size": {"type": "int", "low": 32, "high": 128, "step": 32},
}
DONE = {"trial_status": "complete", "clean_accuracy": 0.8, "worst_modality_auc_pgd": 0.6}


def make_spec(sampler="random", space=None):
    return parse_sweep(tiny_sweep(space=space or SPACE, sampler={"name": sampler, "seed": 0}))


def searcher(spec, tmp_path):
    return ParetoOptunaSearch(
        spec.define,
        metric=spec.keys,
        mode=spec.modes,
        study_name=spec.name,
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        make_sampler=spec.make_sampler,
    )


def study_of(spec, tmp_path):
    return optuna.load_study(study_name=spec.name, storage=f"sqlite:///{tmp_path / 'optuna.db'}")


def values(config):
    return {k: v for k, v in config.items() if k != NUMBER_KEY}


def plain_draws(spec, n, offset=0):
    """What a plain study with the spec's sampler (seed + offset) hands out first."""
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=spec.make_sampler(offset))
    return [spec.define(study.ask()) for _ in range(n)]


def test_config_carries_the_study_trial_number_and_its_values(tmp_path):
    spec = make_spec("tpe")
    s = searcher(spec, tmp_path)
    configs = [s.suggest(f"ray_{i}") for i in range(4)]
    assert [c[NUMBER_KEY] for c in configs] == [0, 1, 2, 3]
    study = study_of(spec, tmp_path)
    assert [t.params for t in study.trials] == [values(c) for c in configs]
    assert all(t.state == optuna.trial.TrialState.RUNNING for t in study.trials)
    assert [values(c) for c in configs] == plain_draws(spec, 4)  # the same draws as ask + define
    assert {"model.activation", "train.batch_size"} <= set(configs[0])
    assert all(("model.tau" in c) == (c["model.activation"] == "gelu") for c in configs)
    assert list(study.directions) == [optuna.study.StudyDirection.MAXIMIZE] * 2


@pytest.mark.parametrize(
    ("result", "error", "state"),
    [
        (DONE, False, "COMPLETE"),
        ({"trial_status": "running", "representation/loss": 0.3}, False, "PRUNED"),  # ASHA stopped it
        ({**DONE, "worst_modality_auc_pgd": None}, False, "PRUNED"),
        ({**DONE, "clean_accuracy": math.nan}, False, "PRUNED"),
        ({"trial_status": "failed", "failure_reason": "loss became nan"}, False, "FAIL"),
        (None, True, "FAIL"),  # errored past max_failures
        (DONE, True, "FAIL"),
    ],
)
def test_only_a_fully_evaluated_trial_is_complete(tmp_path, result, error, state):
    spec = make_spec()
    s = searcher(spec, tmp_path)
    s.suggest("ray_0")
    s.on_trial_complete("ray_0", result=result, error=error)
    (trial,) = study_of(spec, tmp_path).trials
    assert trial.state == optuna.trial.TrialState[state]
    assert trial.values == ([0.8, 0.6] if state == "COMPLETE" else None)


def test_a_trial_is_told_once(tmp_path):
    spec = make_spec()
    s = searcher(spec, tmp_path)
    s.suggest("ray_0")
    s.on_trial_complete("ray_0", result=DONE)
    s.on_trial_complete("ray_0", result={"trial_status": "failed"})
    s.on_trial_complete("never_suggested", result=DONE)
    (trial,) = study_of(spec, tmp_path).trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.values == [0.8, 0.6]


def test_a_used_up_grid_is_no_error(tmp_path):
    spec = make_spec("grid", space={"model.tau": {"type": "categorical", "choices": [0.1, 0.2]}})
    s = searcher(spec, tmp_path)
    configs = [s.suggest(f"ray_{i}") for i in range(2)]
    assert sorted(c["model.tau"] for c in configs) == [0.1, 0.2]
    s.on_trial_complete("ray_0", result=DONE)
    s.on_trial_complete("ray_1", result={"trial_status": "running"})  # GridSampler calls Study.stop() here
    states = [t.state for t in study_of(spec, tmp_path).trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]


def test_pickles_without_its_study(tmp_path):
    spec = make_spec()
    s = searcher(spec, tmp_path)
    s.suggest("ray_0")
    copy = pickle.loads(pickle.dumps(s))
    assert copy.suggest("ray_1")[NUMBER_KEY] == 1  # reopens the study when first needed


def test_restore_hands_an_orphan_out_again_and_reseeds(tmp_path):
    spec = make_spec()
    s = searcher(spec, tmp_path)
    at_start = pickle.dumps(s)  # what Tuner.restore brings back: the searcher as the sweep began
    first = [s.suggest(f"ray_{i}") for i in range(2)]
    s.on_trial_complete("ray_0", result=DONE)
    s.save(str(tmp_path / "searcher-state.pkl"))  # Ray's snapshot: it knows ray_0 (done) and ray_1
    orphan = s.suggest("ray_2")  # asked, then the driver died before Ray recorded the trial
    assert orphan[NUMBER_KEY] == 2

    again = pickle.loads(at_start)
    again.restore(str(tmp_path / "searcher-state.pkl"))
    assert [t.state.name for t in study_of(spec, tmp_path).trials] == ["COMPLETE", "RUNNING", "WAITING"]
    handed = again.suggest("ray_3")
    assert handed == orphan  # its number and its values
    new = again.suggest("ray_4")
    assert new[NUMBER_KEY] == 3
    assert values(new) == plain_draws(spec, 1, offset=3)[0]  # the sampler restarted at seed + 3 trials
    assert values(new) not in [values(c) for c in (*first, orphan)]

    again.on_trial_complete("ray_1", result=DONE)  # the Ray trial restored from the snapshot
    again.on_trial_complete("ray_3", result={"trial_status": "failed"})
    again.on_trial_complete("ray_4", result=DONE)
    study = study_of(spec, tmp_path)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE"]
    assert [t.params for t in study.trials] == [values(c) for c in (*first, orphan, new)]


def test_restore_without_orphans_changes_nothing(tmp_path):
    spec = make_spec()
    s = searcher(spec, tmp_path)
    at_start = pickle.dumps(s)
    s.suggest("ray_0")
    s.save(str(tmp_path / "searcher-state.pkl"))
    again = pickle.loads(at_start)
    again.restore(str(tmp_path / "searcher-state.pkl"))
    assert again.get_state() == {"numbers": {"ray_0": 0}}
    assert again.suggest("ray_1")[NUMBER_KEY] == 1
    again.on_trial_complete("ray_0", result=DONE)
    assert [t.state.name for t in study_of(spec, tmp_path).trials] == ["COMPLETE", "RUNNING"]


def test_a_trial_ray_reruns_after_it_was_told_is_not_told_again(tmp_path):
    """The driver died after telling a trial but before Ray's next snapshot: Ray runs it again."""
    spec = make_spec()
    s = searcher(spec, tmp_path)
    at_start = pickle.dumps(s)
    s.suggest("ray_0")
    s.save(str(tmp_path / "searcher-state.pkl"))
    s.on_trial_complete("ray_0", result=DONE)
    again = pickle.loads(at_start)
    again.restore(str(tmp_path / "searcher-state.pkl"))
    again.on_trial_complete("ray_0", result={"trial_status": "running"})
    (trial,) = study_of(spec, tmp_path).trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.values == [0.8, 0.6]


def test_a_restored_grid_sweep_hands_out_every_point_once(tmp_path):
    grid = {
        "model.tau": {"type": "categorical", "choices": [0.1, 0.2, 0.3, 0.4]},
        "train.batch_size": {"type": "categorical", "choices": [32, 64]},
    }
    spec = make_spec("grid", grid)
    first = searcher(spec, tmp_path)
    for i in range(3):
        first.suggest(f"t{i}")
        first.on_trial_complete(f"t{i}", DONE)
    again = searcher(spec, tmp_path)
    again.set_state(first.get_state())  # what Tuner.restore does on --resume
    for i in range(3, 8):
        again.suggest(f"t{i}")
        again.on_trial_complete(f"t{i}", DONE)
    points = [(t.params["model.tau"], t.params["train.batch_size"]) for t in study_of(spec, tmp_path).trials]
    assert len(points) == 8 and len(set(points)) == 8


def test_a_stopped_sweeps_open_trials_wait_and_a_restored_owner_takes_them_back(tmp_path):
    from optuna.storages import RDBStorage

    from robustmm.tune.search import STOPPED_ATTR, stop_open

    spec = make_spec()
    s = searcher(spec, tmp_path)
    held, orphan = s.suggest("held"), s.suggest("orphan")
    storage = RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    assert stop_open(storage, spec.name, "the sweep was interrupted") == [0, 1]
    trials = study_of(spec, tmp_path).trials
    assert [t.state.name for t in trials] == ["WAITING", "WAITING"]
    assert trials[0].user_attrs[STOPPED_ATTR] == "the sweep was interrupted"
    state = {"numbers": {"held": held[NUMBER_KEY]}}  # Ray restored only the first trial
    again = searcher(spec, tmp_path)
    again.set_state(state)
    assert [t.state.name for t in study_of(spec, tmp_path).trials] == ["RUNNING", "WAITING"]
    handed = again.suggest("new")
    assert handed[NUMBER_KEY] == orphan[NUMBER_KEY] and values(handed) == values(orphan)
