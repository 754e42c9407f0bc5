"""Every shipped search space (search_spaces/*.yaml) parses, and its smoke variant passes the
checks a sweep runs before Ray starts: every corner of the space builds its model, the grid
scores every objective. No Ray, no training."""

from __future__ import annotations

import pytest

from robustmm.experiment import prepare
from robustmm.models.base import model_defaults
from robustmm.tune.runner import _epoch_metrics, check_sweep
from robustmm.tune.space import corner_configs, load_sweep

from sweep_helpers import REPO

SPACES = sorted((REPO / "search_spaces").glob("*.yaml"))


def test_the_zoo_sweeps_are_shipped():
    names = {p.stem for p in SPACES}
    assert {"gmcwd_weights", "rgmc_settings", "dgmc_weights", "crmt_settings"} <= names
    for name in names:
        assert (REPO / "sweeps" / f"{name}.py").is_file(), f"sweeps/{name}.py is missing"


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_space_checks_in_its_smoke_form(path):
    spec = load_sweep(path, smoke=True)
    assert spec.name == path.stem
    check_sweep(spec)
    metrics = _epoch_metrics(spec, prepare(spec.run_config()))
    assert "representation/loss" in metrics


# Seed 000's hand-picked reconstruction weights: MHD image/trajectory (its Table 7.1) and the
# MNIST/SVHN sets a), b), c) of its Tables 5.6 / 5.12 (MNIST is the image, SVHN the second modality).
THESIS_LAMBDAS = {
    "model.recon_weights.image": (0.5, 0.5, 0.5, 0.4),
    "model.recon_weights.trajectory": (0.5, 0.5, 0.05, 0.1),
}


@pytest.mark.parametrize("name", ["gmcwd_weights", "dgmc_weights"])
def test_weight_spaces_cover_the_thesis_lambdas_on_a_log_scale(name):
    spec = load_sweep(REPO / "search_spaces" / f"{name}.yaml")
    params = {p.key: p for p in spec.params}
    for key, values in THESIS_LAMBDAS.items():
        p = params[key]
        assert p.log, f"{key} should be searched on a log scale"
        for v in values:
            assert p.low <= v <= p.high, f"{name}: thesis value {key}={v} outside [{p.low}, {p.high}]"
        # summed errors per sample: the space spans negligible to dominant reconstruction (≥ 3 decades)
        assert p.high / p.low >= 1000
    clean = params["model.clean_prob"]
    assert clean.low == 0.0 and clean.high > 0.5  # the thesis' setting and, inside, our default
    # the λ are weights of the summed error, the scale the space is sized for
    cfg = spec.run_config()
    assert {**model_defaults(cfg.model), **cfg.model_options}["recon_reduction"] == "sum"


def test_rgmc_space_searches_the_thesis_knobs():
    spec = load_sweep(REPO / "search_spaces" / "rgmc_settings.yaml")
    keys = [p.key for p in spec.params]
    assert {"model.odd_weight", "model.fgsm_eps", "model.clean_prob", "model.two_phase"} <= set(keys)
    assert spec.keys == ["clean_accuracy", "worst_modality_accuracy"]


def test_crmt_space_searches_the_papers_knobs_and_budgets_its_epochs():
    spec = load_sweep(REPO / "search_spaces" / "crmt_settings.yaml")
    keys = {p.key for p in spec.params}
    assert {"model.rho", "model.step2_lr_scale", "model.step2_epochs", "model.rounds"} <= keys
    assert {"model.at_eps", "model.mix_alpha", "model.name"} <= keys
    assert spec.keys == ["clean_accuracy", "worst_modality_accuracy_pgd_l2"]
    # a trial reports rounds × (step 1 + step 2) epochs and no classifier stage: 2 × (5 + 4) at most
    assert spec.trial_budget() == 18
    # the conditional options are checked with their condition met (crmt-at for at_eps)
    corners = corner_configs(spec)
    assert any(c.model == "crmt-at" and "at_eps" in c.model_options for c in corners)
    assert not any(c.model != "crmt-mix" and "mix_alpha" in c.model_options for c in corners)


def test_crmt_space_takes_certified_accuracy_as_a_third_objective():
    import yaml

    from robustmm.tune.space import apply_smoke, parse_sweep

    raw = yaml.safe_load((REPO / "search_spaces" / "crmt_settings.yaml").read_text())
    raw["objectives"].append({"name": "certified_accuracy", "radius": 0.25})
    spec = parse_sweep(apply_smoke(raw))
    check_sweep(spec)
    assert spec.keys[-1] == "certified_accuracy_0.25"


def test_a_model_choice_without_a_certificate_is_refused_before_ray_starts():
    import yaml

    from robustmm.errors import ConfigError
    from robustmm.tune.space import apply_smoke, parse_sweep

    raw = yaml.safe_load((REPO / "search_spaces" / "crmt_settings.yaml").read_text())
    raw["space"] = {"model.name": {"type": "categorical", "choices": ["crmt-jt", "gmc"]}}
    raw["smoke"]["run"].pop("model")  # CRMT-only options gmc would refuse first
    raw["smoke"].pop("space")
    with pytest.raises(ConfigError, match="'gmc' gives no certified radius"):
        check_sweep(parse_sweep(apply_smoke(raw)))
