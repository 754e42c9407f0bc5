"""Every shipped search space (search_spaces/*.yaml) parses, and its smoke variant passes the
checks a sweep runs before Ray starts: every corner of the space builds its model, the grid
scores every objective. No Ray, no training."""

from __future__ import annotations

import pytest

from robustmm.experiment import prepare
from robustmm.tune.runner import _epoch_metrics, check_sweep
from robustmm.tune.space import load_sweep

from sweep_helpers import REPO

SPACES = sorted((REPO / "search_spaces").glob("*.yaml"))


def test_the_zoo_sweeps_are_shipped():
    names = {p.stem for p in SPACES}
    assert {"gmcwd_weights", "rgmc_settings", "dgmc_weights"} <= names
    for name in names:
        assert (REPO / "sweeps" / f"{name}.py").is_file(), f"sweeps/{name}.py is missing"


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_space_checks_in_its_smoke_form(path):
    spec = load_sweep(path, smoke=True)
    assert spec.name == path.stem
    check_sweep(spec)
    metrics = _epoch_metrics(spec, prepare(spec.run_config()))
    assert "representation/loss" in metrics


def test_rgmc_space_searches_the_thesis_knobs():
    spec = load_sweep(REPO / "search_spaces" / "rgmc_settings.yaml")
    keys = [p.key for p in spec.params]
    assert {"model.odd_weight", "model.fgsm_eps", "model.clean_prob", "model.two_phase"} <= set(keys)
    assert spec.keys == ["clean_accuracy", "worst_modality_accuracy"]
