"""Every registered model runs as a sweep trial: one tiny trial per model (a grid over
model.name) on the session's Ray, each trained, evaluated, reported and ranked."""

from __future__ import annotations

import pytest

from robustmm.models import MODELS
from robustmm.tune.runner import run_sweep
from robustmm.tune.space import parse_sweep

from sweep_helpers import tiny_sweep

pytestmark = pytest.mark.slow


def test_one_trial_per_model(ray_session, tmp_path):
    names = [n for n in MODELS.names() if n != "raw"]  # the raw-input probe has no latent_dim: no representation
    raw = tiny_sweep(
        run={
            "model": {"name": "gmc", "latent_dim": 12},
            "dataset": {"n_train": 200, "n_test": 50},
            "train": {"epochs": 1},
            "classifier": {"epochs": 1},
            "eval": {
                "grid": [
                    {"attack": "missing", "targets": "each"},
                    {"attack": "pgd", "targets": "each", "eps": [0.1, 0.2], "alpha": 0.1, "steps": 1},
                ]
            },
        },
        space={"model.name": {"type": "categorical", "choices": names}},
        sampler={"name": "grid", "seed": 0},
        budget={"num_samples": len(names), "max_concurrent": 2},
    )
    raw["run"]["model"] = {"name": "gmc", "latent_dim": 12}  # every model has it; orthonormal heads need ≥ 10
    result = run_sweep(parse_sweep(raw), tmp_path / "sweep", say=lambda text: None)
    trials = result.trials
    assert sorted(trials["param.model.name"]) == names
    assert set(trials["status"]) == {"complete"}, trials[["param.model.name", "status"]]
    assert trials["clean_accuracy"].between(0, 1).all() and trials["pareto_rank"].notna().all()
