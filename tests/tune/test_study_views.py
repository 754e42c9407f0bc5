"""What Optuna's own tools see of a sweep's study: the objectives' names, and on each trial the
links to its MLflow run and its rows, set while the trial runs and never on a finished one."""

from __future__ import annotations

import logging
import pickle

import optuna

from robustmm.tune.search import ParetoOptunaSearch
from robustmm.tune.space import parse_sweep
from robustmm.tune.trainable import NUMBER_KEY

from sweep_helpers import tiny_sweep

optuna.logging.set_verbosity(optuna.logging.WARNING)

DONE = {"trial_status": "complete", "clean_accuracy": 0.8, "worst_modality_auc_pgd": 0.6}
CALLS: list[tuple[int, bool]] = []


def fake_links(number: int, complete: bool) -> dict[str, str]:
    CALLS.append((number, complete))
    return {"run": f"run-{number}", **({"rows": f"rows-{number}"} if complete else {})}


def broken_links(number: int, complete: bool) -> dict[str, str]:
    raise ConnectionError("the tracking server is away")


def make(tmp_path, links=fake_links):
    spec = parse_sweep(tiny_sweep(sampler={"name": "random", "seed": 0}))
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    s = ParetoOptunaSearch(
        spec.define,
        metric=spec.keys,
        mode=spec.modes,
        study_name=spec.name,
        storage=url,
        make_sampler=spec.make_sampler,
        links=links,
    )
    return spec, s, lambda: optuna.load_study(study_name=spec.name, storage=url)


def test_the_study_names_its_objectives(tmp_path):
    spec, _, study = make(tmp_path)
    assert study().metric_names == spec.keys == ["clean_accuracy", "worst_modality_auc_pgd"]


def test_an_older_study_gets_the_names_when_it_is_opened(tmp_path):
    spec = parse_sweep(tiny_sweep())
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(storage=url, study_name=spec.name, directions=["maximize", "maximize"])
    assert optuna.load_study(study_name=spec.name, storage=url).metric_names is None
    _, _, study = make(tmp_path)
    assert study().metric_names == spec.keys


def test_links_are_set_from_the_first_result_and_when_told(tmp_path):
    CALLS.clear()
    _, s, study = make(tmp_path)
    a, b = s.suggest("ray_a")[NUMBER_KEY], s.suggest("ray_b")[NUMBER_KEY]
    for _ in range(3):
        s.on_trial_result("ray_a", {"trial_status": "running"})
    assert study().trials[a].user_attrs["run"] == f"run-{a}"  # visible while the trial runs
    s.on_trial_complete("ray_a", DONE)
    s.on_trial_complete("ray_b", {"trial_status": "failed"})
    assert CALLS == [(a, False), (a, True), (b, False)]
    trials = study().trials
    assert trials[a].user_attrs["rows"] == f"rows-{a}" and trials[a].state == optuna.trial.TrialState.COMPLETE
    assert trials[b].user_attrs["run"] == f"run-{b}" and "rows" not in trials[b].user_attrs


def test_a_finished_trial_is_not_linked_again(tmp_path):
    """Ray re-runs a trial the study holds as finished (a resume): no link call, no error."""
    CALLS.clear()
    _, s, study = make(tmp_path)
    a = s.suggest("ray_a")[NUMBER_KEY]
    s.on_trial_complete("ray_a", DONE)
    restored = pickle.loads(pickle.dumps(s))
    restored.set_state({"numbers": {"ray_a": a}})
    restored.on_trial_result("ray_a", {"trial_status": "running"})
    restored.on_trial_complete("ray_a", DONE)
    assert CALLS == [(a, True)]
    assert study().trials[a].user_attrs["run"] == f"run-{a}"


def test_a_link_that_cannot_be_found_does_not_stop_the_sweep(tmp_path, caplog):
    _, s, study = make(tmp_path, links=broken_links)
    a = s.suggest("ray_a")[NUMBER_KEY]
    with caplog.at_level(logging.WARNING, logger="robustmm.tune.search"):
        s.on_trial_result("ray_a", {"trial_status": "running"})
        s.on_trial_complete("ray_a", DONE)
    assert study().trials[a].state == optuna.trial.TrialState.COMPLETE
    assert "the tracking server is away" in caplog.text


def test_a_searcher_pickled_before_links_existed_still_runs(tmp_path):
    _, s, study = make(tmp_path)
    state = s.__getstate__()
    for key in ("_links", "_linked", "_opened"):
        state.pop(key)
    old = ParetoOptunaSearch.__new__(ParetoOptunaSearch)
    old.__setstate__(state)
    a = old.suggest("ray_a")[NUMBER_KEY]
    old.on_trial_result("ray_a", {"trial_status": "running"})
    old.on_trial_complete("ray_a", DONE)
    assert study().trials[a].state == optuna.trial.TrialState.COMPLETE and "run" not in study().trials[a].user_attrs
