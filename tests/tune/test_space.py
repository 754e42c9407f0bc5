"""The sweep spec (search_spaces/*.yaml -> SweepSpec): parsing, its errors, check_sweep, samplers.

No Ray, no training: everything here runs in milliseconds, except the check_sweep tests, which
generate the tiny synth-mhd once (well under a second).
"""

from __future__ import annotations

import optuna
import pytest

from robustmm.errors import ConfigError, RobustMMError, UnknownNameError
from robustmm.tune.runner import check_sweep
from robustmm.tune.space import Param, apply_smoke, corner_configs, load_sweep, parse_sweep

from sweep_helpers import REPO, TINY_GRID, tiny_sweep, write_space

GMCWD_SPACE = REPO / "search_spaces" / "gmcwd_weights.yaml"
TAU = {"type": "float", "low": 0.05, "high": 0.5}
DIRECTIONS = ["maximize", "maximize"]

optuna.logging.set_verbosity(optuna.logging.WARNING)


def with_param(**fields) -> dict:
    """The tiny sweep's one parameter (model.tau) with `fields` changed (None drops a field)."""
    param = {**TAU, **fields}
    return tiny_sweep(space={"model.tau": {k: v for k, v in param.items() if v is not None}})


def suggestions(spec, n: int) -> list[dict]:
    study = optuna.create_study(directions=DIRECTIONS, sampler=spec.make_sampler())
    out = []
    for _ in range(n):
        trial = study.ask()
        spec.define(trial)
        out.append(dict(trial.params))
    return out


# ------------------------------------------------------------------------------- the shipped space


def test_gmcwd_space_parses():
    spec = load_sweep(GMCWD_SPACE)
    assert spec.name == "gmcwd_weights"
    assert [p.key for p in spec.params] == [
        "model.recon_weights.image",
        "model.recon_weights.trajectory",
        "model.noise_sigma",
        "model.clean_prob",
    ]
    assert spec.keys == ["clean_accuracy", "worst_modality_auc_pgd"]
    assert spec.modes == ["max", "max"]
    assert spec.sampler == "tpe" and spec.sampler_seed == 0
    assert (spec.num_samples, spec.max_concurrent) == (32, 2)
    cfg = spec.run_config()
    assert (cfg.model, cfg.dataset, cfg.train.epochs, cfg.classifier.epochs) == ("gmcwd", "synth-mhd", 5, 10)
    assert "n_train" not in cfg.dataset_options
    assert "smoke" not in spec.raw  # sweep.yaml records the sweep as run, not its smoke variant
    assert len(corner_configs(spec)) == 1 + 2 * 4


def test_gmcwd_space_smoke():
    spec = load_sweep(GMCWD_SPACE, smoke=True)
    assert (spec.num_samples, spec.max_concurrent) == (6, 2)
    cfg = spec.run_config()
    assert dict(cfg.dataset_options) == {"n_train": 4000, "n_test": 500, "difficulty": 0.5}
    assert (cfg.train.epochs, cfg.classifier.epochs, cfg.eval.batched) == (3, 5, False)
    assert cfg.model == "gmcwd" and cfg.eval.grid == "smoke"  # untouched sections keep the space's values
    assert [p.key for p in spec.params] == [p.key for p in load_sweep(GMCWD_SPACE).params]
    assert "smoke" not in spec.raw


def test_flag_overrides_win_over_smoke():
    spec = load_sweep(
        GMCWD_SPACE,
        smoke=True,
        overrides={"budget": {"num_samples": 2}, "run": {"train": {"epochs": 1}}},
    )
    assert (spec.num_samples, spec.max_concurrent) == (2, 2)  # max_concurrent still from smoke
    cfg = spec.run_config()
    assert cfg.train.epochs == 1
    assert cfg.classifier.epochs == 5 and cfg.dataset_options["n_train"] == 4000


def test_overrides_without_smoke():
    spec = load_sweep(GMCWD_SPACE, overrides={"sampler": {"seed": 7}, "resources": {"gpu": 0.25}})
    assert (spec.sampler, spec.sampler_seed, spec.gpu) == ("tpe", 7, 0.25)
    assert spec.num_samples == 32


def test_smoke_without_smoke_section(tmp_path):
    path = write_space(tmp_path / "s.yaml", tiny_sweep())
    with pytest.raises(ConfigError, match="--smoke asked for, but the sweep has no smoke: section"):
        load_sweep(path, smoke=True)


def test_smoke_section_with_unknown_key():
    with pytest.raises(ConfigError, match="smoke has no key 'budgett'.*did you mean 'budget'"):
        apply_smoke(tiny_sweep(smoke={"budgett": {"num_samples": 1}}))


def test_load_sweep_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_sweep(tmp_path / "nope.yaml")


def test_tiny_sweep_is_valid():
    spec = parse_sweep(tiny_sweep())
    assert spec.name == "tiny" and spec.params == (Param("model.tau", "float", low=0.05, high=0.5),)
    assert spec.trial_budget() == 1 * (2 + 2)


# ------------------------------------------------------------------------------------ parse errors


def test_trials_evaluate_on_validation():
    spec = parse_sweep(tiny_sweep())
    assert spec.run_config().eval.split == "validation"
    assert {c.eval.split for c in corner_configs(spec)} == {"validation"}
    assert parse_sweep(tiny_sweep(run={"eval": {"split": "validation"}})).run_config().eval.split == "validation"


def test_a_sweep_on_test_is_refused(tmp_path):
    fix = r"robustmm pick DIR --trial N --out picked.yaml`, then `robustmm run --config picked.yaml"
    with pytest.raises(ConfigError, match=rf"run.eval.split is 'test', but a sweep selects on validation.*{fix}"):
        parse_sweep(tiny_sweep(run={"eval": {"split": "test"}}))
    path = write_space(tmp_path / "s.yaml", tiny_sweep())
    with pytest.raises(ConfigError, match="run.eval.split is 'test'"):
        load_sweep(path, overrides={"run": {"eval": {"split": "test"}}})  # as --set eval.split=test gives it
    choices = {"type": "categorical", "choices": ["validation", "test"]}
    with pytest.raises(ConfigError, match="space.eval.split: a sweep selects on validation"):
        parse_sweep(tiny_sweep(space={"eval.split": choices}))


def test_unknown_section_did_you_mean():
    with pytest.raises(ConfigError, match=r"the sweep has no key 'objectivs' \(did you mean 'objectives'\?\)"):
        parse_sweep({**tiny_sweep(), "objectivs": ["clean_accuracy"]})


def test_not_a_mapping():
    with pytest.raises(ConfigError, match="a sweep must be a mapping"):
        parse_sweep(["name", "tiny"])


@pytest.mark.parametrize("name", [None, "", "has space", 3, ".", "..", "a/b", "x" * 101, "é"])
def test_bad_name(name):
    with pytest.raises(ConfigError, match="sweep name .* must be a plain file name"):
        parse_sweep(tiny_sweep(name=name))


@pytest.mark.parametrize("name", ["tiny", "v1.2", "a-b_c", "x" * 100, ".hidden"])
def test_good_name(name):
    assert parse_sweep(tiny_sweep(name=name)).name == name


def test_empty_space():
    with pytest.raises(ConfigError, match="the sweep's space is empty"):
        parse_sweep(tiny_sweep(space={}))


def test_unknown_param_key_did_you_mean():
    with pytest.raises(ConfigError, match=r"space.model.tau has no key 'hihg' \(did you mean 'high'\?\)"):
        parse_sweep(with_param(high=None, hihg=0.5))


def test_categorical_rejects_range_keys():
    with pytest.raises(ConfigError, match="space.model.tau has no key 'low'; its keys: choices, type, when"):
        parse_sweep(tiny_sweep(space={"model.tau": {"type": "categorical", "choices": [0.1], "low": 0}}))


@pytest.mark.parametrize("raw", [{"type": "floot", "low": 0, "high": 1}, {"low": 0, "high": 1}, 0.5])
def test_bad_param_type(raw):
    with pytest.raises(ConfigError, match="space.model.tau must be a mapping with type one of float, int"):
        parse_sweep(tiny_sweep(space={"model.tau": raw}))


@pytest.mark.parametrize("low, high", [(0.3, 0.3), (0.5, 0.1)])
def test_empty_range(low, high):
    with pytest.raises(ConfigError, match=rf"space.model.tau: the range \[{low}, {high}\] is empty"):
        parse_sweep(with_param(low=low, high=high))


def test_range_needs_both_ends():
    with pytest.raises(ConfigError, match="space.model.tau: a float parameter needs low and high"):
        parse_sweep(with_param(high=None))


@pytest.mark.parametrize("low", ["0.1", True, float("nan"), float("inf")])
def test_range_ends_must_be_numbers(low):
    with pytest.raises(ConfigError, match="space.model.tau.low must be a finite number"):
        parse_sweep(with_param(low=low))


def test_int_range_needs_integers():
    with pytest.raises(ConfigError, match="an int parameter needs integer low and high"):
        parse_sweep(tiny_sweep(space={"train.epochs": {"type": "int", "low": 1.5, "high": 3}}))


@pytest.mark.parametrize("low", [0.0, -0.1])
def test_log_range_needs_positive_low(low):
    with pytest.raises(ConfigError, match="space.model.tau: a log-scaled range needs low > 0"):
        parse_sweep(with_param(low=low, log=True))


def test_log_must_be_bool():
    with pytest.raises(ConfigError, match="space.model.tau.log must be true or false"):
        parse_sweep(with_param(log="yes"))


def test_log_and_step():
    with pytest.raises(ConfigError, match="space.model.tau: give either log or step, not both"):
        parse_sweep(with_param(log=True, step=0.05))


@pytest.mark.parametrize("step", [0, -0.1, 1.0])
def test_step_out_of_range(step):
    with pytest.raises(ConfigError, match=r"space.model.tau.step must be in \(0, high - low\]"):
        parse_sweep(with_param(step=step))


def test_int_step_must_be_integer():
    with pytest.raises(ConfigError, match="step of an int parameter must be an integer"):
        parse_sweep(tiny_sweep(space={"train.epochs": {"type": "int", "low": 1, "high": 5, "step": 1.5}}))


@pytest.mark.parametrize("choices", [[], None, "relu"])
def test_empty_choices(choices):
    with pytest.raises(ConfigError, match="space.model.activation: choices must be a non-empty list"):
        parse_sweep(tiny_sweep(space={"model.activation": {"type": "categorical", "choices": choices}}))


def test_repeated_choices():
    with pytest.raises(ConfigError, match="repeat a value"):
        parse_sweep(tiny_sweep(space={"model.activation": {"type": "categorical", "choices": ["relu", "relu"]}}))


def test_choice_must_be_scalar():
    with pytest.raises(ConfigError, match=r"choice \[1, 2\] must be a number, a string"):
        parse_sweep(tiny_sweep(space={"model.activation": {"type": "categorical", "choices": ["relu", [1, 2]]}}))


def test_space_key_in_unknown_section():
    with pytest.raises(ConfigError, match="space.modle.tau: unknown section 'modle'; sections: model, dataset"):
        parse_sweep(tiny_sweep(space={"modle.tau": TAU}))


def test_space_key_with_wrong_type_for_config():
    # corner configs are built at parse time: a float range on an int key fails at its ends
    with pytest.raises(ConfigError, match="train.batch_size must be an integer, got 32.5"):
        parse_sweep(tiny_sweep(space={"train.batch_size": {"type": "float", "low": 32.5, "high": 64.5}}))


def test_when_names_a_later_param():
    space = {
        "model.tau": {**TAU, "when": {"model.activation": "gelu"}},
        "model.activation": {"type": "categorical", "choices": ["relu", "gelu"]},
    }
    with pytest.raises(ConfigError, match="space.model.tau.when names 'model.activation', which is not a parameter"):
        parse_sweep(tiny_sweep(space=space))


def test_when_names_an_unlisted_param():
    with pytest.raises(ConfigError, match="space.model.tau.when names 'model.noise_mode', which is not a parameter"):
        parse_sweep(tiny_sweep(space={"model.tau": {**TAU, "when": {"model.noise_mode": "all"}}}))


@pytest.mark.parametrize("when", [{}, "model.activation", ["model.activation"]])
def test_when_must_be_a_mapping(when):
    with pytest.raises(ConfigError, match="space.model.tau.when must map parameter keys to values"):
        parse_sweep(with_param(when=when))


@pytest.mark.parametrize("objectives", [[], ["clean_accuracy"], None])
def test_fewer_than_two_objectives(objectives):
    with pytest.raises(ConfigError, match="objective"):
        parse_sweep(tiny_sweep(objectives=objectives))


def test_one_objective_says_two_are_needed():
    with pytest.raises(ConfigError, match="a sweep needs 2 or more objectives to trade off, got 1"):
        parse_sweep(tiny_sweep(objectives=["clean_accuracy"]))


def test_unknown_objective():
    with pytest.raises(UnknownNameError) as info:
        parse_sweep(tiny_sweep(objectives=["clean_accuracy", "worst_modality_aucc"]))
    assert isinstance(info.value, RobustMMError)
    message = str(info.value)
    assert "unknown objective 'worst_modality_aucc'" in message
    assert "did you mean 'worst_modality_auc'" in message
    assert "clean_accuracy" in message  # lists the known objectives


def test_objective_missing_its_parameter():
    with pytest.raises(ConfigError, match="objective 'worst_modality_auc' needs parameter 'attack'"):
        parse_sweep(tiny_sweep(objectives=["clean_accuracy", "worst_modality_auc"]))


def test_duplicate_objective():
    with pytest.raises(ConfigError, match="share the metric key 'clean_accuracy'"):
        parse_sweep(tiny_sweep(objectives=["clean_accuracy", {"name": "clean_accuracy", "mode": "max"}]))


def test_unknown_sampler():
    with pytest.raises(ConfigError, match=r"sampler 'tpee' unknown \(did you mean 'tpe'\?\); use one of tpe, nsga2"):
        parse_sweep(tiny_sweep(sampler={"name": "tpee", "seed": 0}))


def test_sampler_as_a_string():
    spec = parse_sweep(tiny_sweep(sampler="random"))
    assert (spec.sampler, spec.sampler_seed) == ("random", 0)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_sampler_seed(seed):
    with pytest.raises(ConfigError, match="sampler.seed must be an integer"):
        parse_sweep(tiny_sweep(sampler={"name": "tpe", "seed": seed}))


def test_bad_sampler_option():
    spec = parse_sweep(tiny_sweep(sampler={"name": "tpe", "seed": 0, "n_startup_trailz": 3}))
    with pytest.raises(ConfigError, match="sampler 'tpe': bad option"):
        spec.make_sampler()


def test_grid_sampler_needs_step_on_floats():
    with pytest.raises(ConfigError, match="space.model.tau: the grid sampler needs a step"):
        parse_sweep(tiny_sweep(sampler={"name": "grid"}))


def test_grid_sampler_refuses_conditional_params():
    space = {
        "model.activation": {"type": "categorical", "choices": ["relu", "gelu"]},
        "model.tau": {**TAU, "step": 0.05, "when": {"model.activation": "gelu"}},
    }
    with pytest.raises(ConfigError, match="the grid sampler cannot search conditional parameters"):
        parse_sweep(tiny_sweep(space=space, sampler={"name": "grid"}))


@pytest.mark.parametrize(
    "budget, match",
    [
        ({"num_samples": 0}, "budget.num_samples must be an integer ≥ 1, got 0"),
        ({"num_samples": 2.5}, "budget.num_samples must be an integer, got 2.5"),
        ({"num_samples": "4"}, "budget.num_samples must be an integer, got '4'"),
        ({"max_concurrent": 0}, "budget.max_concurrent must be an integer ≥ 1, got 0"),
        ({"time_budget_s": 0}, "budget.time_budget_s must be > 0 or null"),
        ({"time_budget_s": -5.0}, "budget.time_budget_s must be > 0 or null"),
        ({"time_budget_s": "1h"}, "budget.time_budget_s must be a finite number"),
        ({"num_sample": 4}, r"budget has no key 'num_sample' \(did you mean 'num_samples'\?\)"),
    ],
)
def test_bad_budget(budget, match):
    with pytest.raises(ConfigError, match=match):
        parse_sweep(tiny_sweep(budget=budget))


def test_budget_must_be_a_mapping():
    with pytest.raises(ConfigError, match="sweep section 'budget' must be a mapping"):
        parse_sweep(tiny_sweep(budget=4))


@pytest.mark.parametrize(
    "resources, match",
    [
        ({"cpu": 0, "gpu": 0}, "resources: cpu must be > 0 and gpu ≥ 0"),
        ({"cpu": 1, "gpu": -0.5}, "resources: cpu must be > 0 and gpu ≥ 0"),
        ({"cpu": 1, "gpu": 1.5}, "resources: cpu must be > 0 and gpu ≥ 0"),
        ({"cpu": "one"}, "resources.cpu must be a finite number"),
        ({"gpus": 1}, r"resources has no key 'gpus' \(did you mean 'gpu'\?\)"),
    ],
)
def test_bad_resources(resources, match):
    with pytest.raises(ConfigError, match=match):
        parse_sweep(tiny_sweep(resources=resources))


@pytest.mark.parametrize("gpu", [0, 0.25, 1, 2])
def test_good_gpu_counts(gpu):
    assert parse_sweep(tiny_sweep(resources={"cpu": 1, "gpu": gpu})).gpu == gpu


@pytest.mark.parametrize(
    "section, value, match",
    [
        ("checkpoint", {"every": 0}, "checkpoint.every must be an integer ≥ 1"),
        ("checkpoint", {"evry": 1}, "checkpoint has no key 'evry'"),
        ("failure", {"max_failures": -1}, "failure.max_failures must be an integer ≥ 0"),
        ("early_stopping", {"mode": "min"}, "early_stopping.metric is required"),
        ("early_stopping", {"metric": "representation/loss", "mode": "up"}, "early_stopping.mode must be min or max"),
        ("early_stopping", {"metric": "representation/loss", "grace_period": 0}, "grace_period must be an integer"),
        ("early_stopping", "representation/loss", "early_stopping must be a mapping or null"),
    ],
)
def test_bad_other_sections(section, value, match):
    with pytest.raises(ConfigError, match=match):
        parse_sweep(tiny_sweep(**{section: value}))


# ---------------------------------------------------------------------- check_sweep (loads the data)


def test_check_sweep_accepts_the_tiny_sweep():
    check_sweep(parse_sweep(tiny_sweep(early_stopping={"metric": "representation/loss"})))


def test_check_sweep_unknown_model_option():
    spec = parse_sweep(tiny_sweep(space={"model.tauu": TAU}))  # model options are only known with the data
    unknown = r"model 'gmc' has no option 'tauu' \(did you mean 'tau'\?\); its options: .*tau"
    with pytest.raises(ConfigError, match=unknown):
        check_sweep(spec)


def test_check_sweep_bad_model_option_value_at_a_corner():
    # the check builds the model at both ends of every range, not just at the run config's values
    spec = parse_sweep(tiny_sweep(space={"model.activation": {"type": "categorical", "choices": ["relu", 3]}}))
    with pytest.raises(ConfigError, match="activation"):
        check_sweep(spec)


def test_check_sweep_objective_the_grid_cannot_serve():
    assert not any(cell["attack"] == "bim" for cell in TINY_GRID)
    spec = parse_sweep(tiny_sweep(objectives=["clean_accuracy", {"name": "auc", "attack": "bim"}]))
    with pytest.raises(ConfigError, match="objective auc_bim needs bim cells; the grid has none"):
        check_sweep(spec)


def test_check_sweep_early_stopping_metric_not_reported():
    spec = parse_sweep(tiny_sweep(early_stopping={"metric": "representation/losss", "mode": "min"}))
    with pytest.raises(ConfigError, match="early_stopping.metric 'representation/losss' is not reported") as info:
        check_sweep(spec)
    assert "representation/loss" in str(info.value)
    assert "classifier/train_accuracy" in str(info.value)


def test_float_range_with_integer_ends_samples_floats_and_an_int_key_is_refused():
    assert parse_sweep(tiny_sweep(space={"model.tau": {"type": "float", "low": 0, "high": 1}})).params[0].low == 0.0
    with pytest.raises(ConfigError, match="train.epochs must be an integer"):
        parse_sweep(tiny_sweep(space={"train.epochs": {"type": "float", "low": 1, "high": 5}}))


def test_another_dataset_does_not_inherit_the_spaces_dataset_options():
    path = GMCWD_SPACE
    spec = load_sweep(path, smoke=True, overrides={"run": {"dataset": {"name": "mhd", "data_dir": "d"}}})
    assert spec.run["dataset"] == {"name": "mhd", "data_dir": "d"}
    same = load_sweep(path, smoke=True, overrides={"run": {"dataset": {"name": "synth-mhd"}}})
    assert same.run["dataset"]["difficulty"] == 0.5


# ------------------------------------------------------------------------------ the Optuna side


def conditional_spec(**changes):
    space = {
        "model.activation": {"type": "categorical", "choices": ["relu", "gelu"]},
        "model.tau": {**TAU, "when": {"model.activation": "gelu"}},
        "train.batch_size": {"type": "int", "low": 32, "high": 128, "step": 32},
    }
    return parse_sweep(tiny_sweep(space=space, **changes))


def test_conditional_param_sampled_only_when_its_condition_holds():
    spec = conditional_spec()
    seen = set()
    for params in suggestions(spec, 20):
        assert params["train.batch_size"] in (32, 64, 96, 128)
        if params["model.activation"] == "gelu":
            assert 0.05 <= params["model.tau"] <= 0.5
        else:
            assert "model.tau" not in params
        seen.add(params["model.activation"])
    assert seen == {"relu", "gelu"}


def test_condition_with_a_list_of_values():
    space = {
        "model.activation": {"type": "categorical", "choices": ["relu", "gelu", "tanh"]},
        "model.tau": {**TAU, "when": {"model.activation": ["gelu", "tanh"]}},
    }
    spec = parse_sweep(tiny_sweep(space=space, sampler={"name": "random", "seed": 1}))
    p = spec.params[1]
    assert p.when == (("model.activation", ("gelu", "tanh")),)
    assert p.active({"model.activation": "tanh"}) and not p.active({"model.activation": "relu"})
    assert not p.active({})
    for params in suggestions(spec, 20):
        assert ("model.tau" in params) == (params["model.activation"] != "relu")


def test_inactive_param_keeps_the_run_config_value():
    spec = conditional_spec(run={"model": {"tau": 0.2}})
    assert spec.run_config({"model.activation": "relu"}).model_options["tau"] == 0.2


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random"])
def test_samplers_are_seeded(sampler):
    first = suggestions(conditional_spec(sampler={"name": sampler, "seed": 3}), 5)
    again = suggestions(conditional_spec(sampler={"name": sampler, "seed": 3}), 5)
    other = suggestions(conditional_spec(sampler={"name": sampler, "seed": 4}), 5)
    assert first == again
    assert first != other


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random", "gp", "grid"])
def test_every_sampler_builds(sampler):
    space = {
        "model.tau": {**TAU, "step": 0.05},
        "train.batch_size": {"type": "int", "low": 32, "high": 128, "step": 32},
        "model.activation": {"type": "categorical", "choices": ["relu", "gelu"]},
    }
    spec = parse_sweep(tiny_sweep(space=space, sampler={"name": sampler, "seed": 0}))
    params = suggestions(spec, 2)
    assert all(set(p) == set(space) for p in params)
    assert spec.run_config(params[0]).model_options["activation"] in ("relu", "gelu")


def test_grid_sampler_walks_the_grid():
    space = {
        "model.tau": {"type": "float", "low": 0.1, "high": 0.3, "step": 0.1},
        "model.activation": {"type": "categorical", "choices": ["relu", "gelu"]},
    }
    spec = parse_sweep(tiny_sweep(space=space, sampler={"name": "grid", "seed": 0}))
    assert spec.grid() == {"model.tau": [0.1, 0.2, 0.3], "model.activation": ["relu", "gelu"]}
    seen = {(round(p["model.tau"], 9), p["model.activation"]) for p in suggestions(spec, 6)}
    assert seen == {(t, a) for t in (0.1, 0.2, 0.3) for a in ("relu", "gelu")}


# ------------------------------------------------------------------------ run configs and grids


def test_run_config_sets_nested_keys():
    spec = load_sweep(GMCWD_SPACE)
    cfg = spec.run_config({"model.recon_weights.image": 0.5, "model.noise_sigma": 0.25})
    assert cfg.model_options["recon_weights"] == {"image": 0.5}
    assert cfg.model_options["noise_sigma"] == 0.25
    base = spec.run_config()
    assert "recon_weights" not in base.model_options  # the spec's run section is not modified
    for section in ("model", "dataset", "dataset_options", "train", "classifier", "eval", "seeds", "device"):
        assert getattr(cfg, section) == getattr(base, section)


def test_run_config_ignores_keys_that_are_not_params():
    spec = parse_sweep(tiny_sweep())
    cfg = spec.run_config({"model.tau": 0.3, "train.lr": 0.5})
    assert cfg.model_options["tau"] == 0.3
    assert cfg.train.lr == 0.003  # not a parameter: stays at the run config's value
    assert cfg.model_options["latent_dim"] == 16


def test_grid_values():
    ints = Param.parse("train.batch_size", {"type": "int", "low": 32, "high": 128, "step": 32})
    assert ints.grid_values() == [32, 64, 96, 128]
    assert all(type(v) is int for v in ints.grid_values())
    assert Param.parse("train.epochs", {"type": "int", "low": 1, "high": 4}).grid_values() == [1, 2, 3, 4]
    floats = Param.parse("model.tau", {"type": "float", "low": 0.0, "high": 0.3, "step": 0.1})
    assert floats.grid_values() == [0.0, 0.1, 0.2, 0.3]
    partial = Param.parse("model.tau", {"type": "float", "low": 0.0, "high": 1.0, "step": 0.4})
    assert partial.grid_values() == [0.0, 0.4, 0.8]  # never beyond high
    cat = Param.parse("model.activation", {"type": "categorical", "choices": ["relu", "gelu"]})
    assert cat.grid_values() == ["relu", "gelu"]
    with pytest.raises(ConfigError, match="the grid sampler needs a step"):
        Param.parse("model.tau", TAU).grid_values()


def test_corners():
    assert Param.parse("model.tau", TAU).corners() == [0.05, 0.5]
    assert Param.parse("train.epochs", {"type": "int", "low": 1.0, "high": 3.0}).corners() == [1, 3]
    cat = Param.parse("model.activation", {"type": "categorical", "choices": ["relu", "gelu", None]})
    assert cat.corners() == ["relu", "gelu", None]
    spec = parse_sweep(tiny_sweep())
    assert [c.model_options["tau"] for c in corner_configs(spec)[1:]] == [0.05, 0.5]
    assert "tau" not in corner_configs(spec)[0].model_options


def test_to_yaml_round_trips(tmp_path):
    spec = load_sweep(GMCWD_SPACE, smoke=True, overrides={"budget": {"num_samples": 2}})
    path = tmp_path / "sweep.yaml"
    path.write_text(spec.to_yaml())
    again = load_sweep(path)
    assert again == spec
    assert again.raw == spec.raw
