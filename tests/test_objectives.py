"""Objectives against values computed by hand from small hand-built rows (no training)."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from result_rows import result_row

from robustmm.attacks import make_cell, parse_grid
from robustmm.attacks.mask import encode_mask
from robustmm.errors import ConfigError, DataError, UnknownNameError
from robustmm.objectives import (
    OBJECTIVES,
    Objective,
    compute_objectives,
    make_objective,
    parse_objectives,
)
from robustmm.results import to_frame

NAN = math.nan
MODALITIES = ("image", "trajectory")


def row(seed, pert, target, acc, eps=NAN, alpha=NAN, sigma=NAN, steps=NAN, restarts=NAN):
    return result_row(
        "gmcwd", seed, pert, target, acc, eps=eps, alpha=alpha, sigma=sigma, steps=steps, restarts=restarts
    )


def pgd(seed, target, eps, alpha, acc):
    return row(seed, "pgd", target, acc, eps=eps, alpha=alpha, steps=5, restarts=1)


# Seed 0. PGD on image has two cells at ε=0.1 (two step sizes, like the thesis BIM grid): the
# AUC must take the lower one (0.5). The joint image+trajectory target is the weakest of all and
# must not count as a "modality" for the worst-modality objectives.
SEED0 = [
    row(0, "clean", "none", 0.9),
    row(0, "missing", "image", 0.6),
    row(0, "missing", "trajectory", 0.4),
    row(0, "gaussian", "image", 0.8, sigma=0.5),
    row(0, "gaussian", "trajectory", 0.7, sigma=0.5),
    pgd(0, "image", 0.1, 0.025, 0.6),
    pgd(0, "image", 0.1, 0.05, 0.5),
    pgd(0, "image", 0.2, 0.05, 0.3),
    pgd(0, "trajectory", 0.1, 0.025, 0.7),
    pgd(0, "trajectory", 0.2, 0.05, 0.5),
    pgd(0, "image+trajectory", 0.1, 0.025, 0.2),
    pgd(0, "image+trajectory", 0.2, 0.05, 0.1),
]

# By hand, seed 0:
#   AUC pgd image:      points (0, .9) (.1, min(.6, .5)=.5) (.2, .3)
#                       trapezoids .1*(.9+.5)/2 + .1*(.5+.3)/2 = .07 + .04 = .11, / .2 -> .55
#   AUC pgd trajectory: .1*(.9+.7)/2 + .1*(.7+.5)/2 = .08 + .06 = .14, / .2 -> .70
#   AUC pgd joint:      .1*(.9+.2)/2 + .1*(.2+.1)/2 = .055 + .015 = .07, / .2 -> .35
AUC_IMAGE, AUC_TRAJ, AUC_JOINT = 0.55, 0.70, 0.35


def obj(name, **params):
    return make_objective({"name": name, **params})


# --------------------------------------------------------------------------- values


def test_clean_accuracy():
    assert obj("clean_accuracy")(SEED0) == pytest.approx(0.9)


def test_mean_robust_accuracy_all_cells_and_one_attack():
    # worst case (no masks: the running min over ε, clean .9 at ε=0): the image cells at ε=.1 (.6 and .5,
    # two step sizes) both count .5; gaussian .8 .7 + pgd .5 .5 .3 .7 .5 .2 .1 = 4.3 over 9 cells
    assert obj("mean_robust_accuracy")(SEED0) == pytest.approx(4.3 / 9)
    assert obj("mean_robust_accuracy", attack="gaussian")(SEED0) == pytest.approx(0.75)
    assert obj("mean_robust_accuracy", attack="pgd")(SEED0) == pytest.approx(2.8 / 7)


def test_worst_modality_accuracy_picks_the_weaker_single_modality():
    # all attacks, worst case: image (.8+.5+.5+.3)/4 = .525, trajectory (.7+.7+.5)/3 = .633 -> image;
    # joint (.15) excluded
    assert obj("worst_modality_accuracy")(SEED0) == pytest.approx(0.525)
    # gaussian only: image .8, trajectory .7 -> the other modality is the weaker one
    assert obj("worst_modality_accuracy", attack="gaussian")(SEED0) == pytest.approx(0.7)


def test_auc_trapezoid_min_over_duplicate_eps_and_normalised():
    assert obj("auc", attack="pgd", target="image")(SEED0) == pytest.approx(AUC_IMAGE)
    assert obj("auc", attack="pgd", target="trajectory")(SEED0) == pytest.approx(AUC_TRAJ)
    assert obj("auc", attack="pgd", target="image+trajectory")(SEED0) == pytest.approx(AUC_JOINT)
    # target=None: mean over every target the attack has, joint included
    assert obj("auc", attack="pgd")(SEED0) == pytest.approx((AUC_IMAGE + AUC_TRAJ + AUC_JOINT) / 3)


def test_auc_is_in_unit_interval_and_one_for_a_perfect_model():
    perfect = [row(0, "clean", "none", 1.0), *(pgd(0, "image", e, e / 4, 1.0) for e in (0.05, 0.1, 0.3))]
    assert obj("auc", attack="pgd", target="image")(perfect) == pytest.approx(1.0)
    broken = [row(0, "clean", "none", 1.0), pgd(0, "image", 0.1, 0.025, 0.0), pgd(0, "image", 0.4, 0.1, 0.0)]
    # (0, 1) -> (.1, 0) -> (.4, 0): area .05, / .4 -> .125
    assert obj("auc", attack="pgd", target="image")(broken) == pytest.approx(0.125)


def test_worst_modality_auc_ignores_joint_targets():
    assert obj("worst_modality_auc", attack="pgd")(SEED0) == pytest.approx(min(AUC_IMAGE, AUC_TRAJ))


def test_missing_modality_accuracy_min_mean_and_one_modality():
    assert obj("missing_modality_accuracy")(SEED0) == pytest.approx(0.4)
    assert obj("missing_modality_accuracy", reduce="mean")(SEED0) == pytest.approx(0.5)
    assert obj("missing_modality_accuracy", modality="image")(SEED0) == pytest.approx(0.6)


SEED1 = [
    row(1, "clean", "none", 0.8),
    row(1, "missing", "image", 0.2),
    row(1, "missing", "trajectory", 0.7),
    row(1, "gaussian", "image", 0.5, sigma=0.5),
    row(1, "gaussian", "trajectory", 0.9, sigma=0.5),
    pgd(1, "image", 0.1, 0.025, 0.7),
    pgd(1, "image", 0.2, 0.05, 0.5),
    pgd(1, "trajectory", 0.1, 0.025, 0.4),
    pgd(1, "trajectory", 0.2, 0.05, 0.2),
]


def test_two_seeds_are_scored_per_seed_then_averaged():
    rows = SEED0 + SEED1
    assert obj("clean_accuracy")(rows) == pytest.approx(0.85)
    # per seed: min(.8, .7)=.7 and min(.5, .9)=.5 -> .6; pooling the seeds first would give min(.65, .8)=.65
    assert obj("worst_modality_accuracy", attack="gaussian")(rows) == pytest.approx(0.6)
    # seed 1 image AUC: (.1*(.8+.7)/2 + .1*(.7+.5)/2) / .2 = .675 -> mean .6125;
    # pooling (min over both seeds at each ε, mean clean) would give .5375
    assert obj("auc", attack="pgd", target="image")(rows) == pytest.approx((AUC_IMAGE + 0.675) / 2)
    # seed 1 trajectory AUC: (.1*(.8+.4)/2 + .1*(.4+.2)/2) / .2 = .45; worst per seed: .55 and .45
    assert obj("worst_modality_auc", attack="pgd")(rows) == pytest.approx((0.55 + 0.45) / 2)
    # missing min per seed: .4 and .2; mean per seed: .5 and .45
    assert obj("missing_modality_accuracy")(rows) == pytest.approx(0.3)
    assert obj("missing_modality_accuracy", reduce="mean")(rows) == pytest.approx(0.475)


def test_rows_as_dicts_plain_frame_and_typed_frame_agree():
    objectives = parse_objectives(
        ["clean_accuracy", {"name": "auc", "attack": "pgd"}, {"name": "worst_modality_accuracy"}]
    )
    rows = SEED0 + SEED1
    expected = compute_objectives(objectives, rows)
    assert compute_objectives(objectives, pd.DataFrame(rows)) == pytest.approx(expected)
    assert compute_objectives(objectives, to_frame(rows)) == pytest.approx(expected)
    assert list(expected) == ["clean_accuracy", "auc_pgd", "worst_modality_accuracy"]
    assert expected["clean_accuracy"] == pytest.approx(0.85)


def test_lacking_rows_give_nan_and_several_models_are_refused():
    assert math.isnan(obj("clean_accuracy")([r for r in SEED0 if r["perturbation"] != "clean"]))
    assert math.isnan(obj("auc", attack="fgsm")(SEED0))
    assert math.isnan(obj("clean_accuracy")([]))
    other = [{**r, "model": "gmc"} for r in SEED0]
    with pytest.raises(DataError, match="several model/dataset"):
        obj("clean_accuracy")(SEED0 + other)
    with pytest.raises(DataError, match="lack column"):
        obj("clean_accuracy")([{"perturbation": "clean", "target": "none"}])


# --------------------------------------------------------------------------- worst case per sample


def masked(pert, target, correct, model="rgmc", **params):
    """A row of 100 samples whose correct ones are the indices in `correct`."""
    ok = np.zeros(100, bool)
    ok[list(correct)] = True
    acc = ok.mean()
    return {
        **row(0, pert, target, acc, **params),
        "model": model,
        "correct": int(ok.sum()),
        "correct_mask": encode_mask(ok),
    }


def test_a_curve_that_rises_with_eps_earns_nothing_for_the_rise():
    """The issue's RGMC numbers: PGD accuracy 13 / 7 / 41 % at ε = .1 / .2 / .3 from 90 % clean. The
    ε-balls are nested, so a sample lost at ε=.2 is lost at .3 too: the worst case stays at 7 %."""
    rows = [
        masked("clean", "none", range(90)),
        *(masked("pgd", "image", range(k), eps=e, alpha=e / 4, steps=10) for e, k in ((0.1, 13), (0.2, 7), (0.3, 41))),
        masked("pgd", "trajectory", range(80), eps=0.3, alpha=0.075, steps=10),
    ]
    per_cell = (0.1 * (0.9 + 0.13) / 2 + 0.1 * (0.13 + 0.07) / 2 + 0.1 * (0.07 + 0.41) / 2) / 0.3  # .285
    worst = (0.1 * (0.9 + 0.13) / 2 + 0.1 * (0.13 + 0.07) / 2 + 0.1 * (0.07 + 0.07) / 2) / 0.3  # .2283
    assert obj("auc", attack="pgd", target="image")(rows) == pytest.approx(worst)
    assert obj("worst_modality_auc", attack="pgd")(rows) == pytest.approx(worst)
    assert worst < per_cell - 0.05
    assert obj("worst_modality_accuracy", attack="pgd")(rows) == pytest.approx((0.13 + 0.07 + 0.07) / 3)
    # an FGSM cell at a smaller ε joins the L∞ family: samples 0-4 lost at ε=.05 are lost at every larger ε
    # on the image; the trajectory is another curve (.8)
    fgsm = masked("fgsm", "image", range(5, 90), eps=0.05)
    assert obj("mean_robust_accuracy", attack="pgd")([*rows, fgsm]) == pytest.approx((0.08 + 0.02 + 0.02 + 0.8) / 4)


def test_attack_variants_are_folded_per_sample_not_per_cell():
    """Each variant's attack succeeds on another half of the samples: per cell both are at 50 %, but
    only the quarter that survives both is robust."""
    rows = [
        masked("clean", "none", range(100)),
        masked("pgd", "image", range(50), eps=0.1, alpha=0.025, steps=10),
        masked("pgd", "image", range(25, 75), eps=0.1, alpha=0.025, steps=10, model="rgmc[o-detached]"),
    ]
    assert obj("mean_robust_accuracy", attack="pgd")(rows) == pytest.approx(0.25)
    assert obj("worst_modality_accuracy")(rows) == pytest.approx(0.25)
    assert obj("auc", attack="pgd", target="image")(rows) == pytest.approx((1 + 0.25) / 2)
    without_masks = [{**r, "correct_mask": ""} for r in rows]  # old rows: the per-cell min, an upper bound
    assert obj("mean_robust_accuracy", attack="pgd")(without_masks) == pytest.approx(0.5)
    assert obj("clean_accuracy")(rows) == pytest.approx(1.0)


# --------------------------------------------------------------------------- keys, labels, specs


ALL = [
    "clean_accuracy",
    {"name": "mean_robust_accuracy"},
    {"name": "mean_robust_accuracy", "attack": "pgd"},
    {"name": "mean_robust_accuracy", "attack": "gaussian"},
    {"name": "worst_modality_accuracy"},
    {"name": "worst_modality_accuracy", "attack": "pgd"},
    {"name": "auc", "attack": "pgd"},
    {"name": "auc", "attack": "pgd", "target": "image"},
    {"name": "auc", "attack": "pgd", "target": "trajectory"},
    {"name": "auc", "attack": "pgd_l2", "target": "image+trajectory"},
    {"name": "auc", "attack": "fgsm", "target": "image"},
    {"name": "worst_modality_auc", "attack": "pgd"},
    {"name": "worst_modality_auc", "attack": "bim", "mode": "min"},
    {"name": "missing_modality_accuracy"},
    {"name": "missing_modality_accuracy", "reduce": "mean"},
    {"name": "missing_modality_accuracy", "modality": "image"},
]


def test_keys_are_unique_and_in_the_metric_charset():
    keys = [o.key for o in parse_objectives(ALL)]
    assert len(set(keys)) == len(ALL)
    for k in keys:
        assert re.fullmatch(r"[A-Za-z0-9_.-]+", k), k
    assert "clean_accuracy" in keys and "worst_modality_auc_pgd" in keys and "auc_pgd_image" in keys
    assert "missing_modality_accuracy_mean" in keys and "auc_pgd_l2_image-trajectory" in keys
    assert "missing_modality_accuracy_image" in keys and "mean_robust_accuracy" in keys


def test_defaults_are_dropped_so_equal_objectives_have_equal_keys():
    a = obj("auc", target=None, attack="pgd")
    assert a == obj("auc", attack="pgd") and a.params == (("attack", "pgd"),) and a.key == "auc_pgd"
    assert obj("missing_modality_accuracy", reduce="min") == make_objective("missing_modality_accuracy")
    b = obj("auc", target="image", attack="pgd")
    assert b.params == (("attack", "pgd"), ("target", "image"))
    assert obj("auc", attack="pgd", mode="min").mode == "min"


def test_labels():
    assert obj("worst_modality_auc", attack="pgd").label == "worst-modality AUC (pgd)"
    assert make_objective("clean_accuracy").label == "clean accuracy"
    assert obj("auc", attack="pgd", target="image").label == "AUC (pgd, image)"


def test_to_spec_round_trips():
    for spec in ALL:
        o = make_objective(spec)
        assert make_objective(o.to_spec()) == o, spec
    assert make_objective("clean_accuracy").to_spec() == "clean_accuracy"
    assert obj("worst_modality_auc", attack="pgd", mode="max").to_spec() == {
        "name": "worst_modality_auc",
        "attack": "pgd",
    }
    assert obj("worst_modality_auc", attack="bim", mode="min").to_spec() == {
        "name": "worst_modality_auc",
        "attack": "bim",
        "mode": "min",
    }


def test_registry_lists_every_objective_with_a_summary():
    assert OBJECTIVES.names() == sorted(
        [
            "auc",
            "certified_accuracy",
            "clean_accuracy",
            "mean_certified_radius",
            "mean_robust_accuracy",
            "missing_modality_accuracy",
            "vulnerability_ratio",
            "worst_modality_accuracy",
            "worst_modality_auc",
        ]
    )
    for name, entry in OBJECTIVES.items():
        assert entry.mode == ("min" if name == "vulnerability_ratio" else "max")
        assert entry.summary and not entry.summary.startswith(entry.name)
    assert OBJECTIVES.get("auc").required == ("attack",)
    assert OBJECTIVES.get("missing_modality_accuracy").defaults == (("modality", None), ("reduce", "min"))


# --------------------------------------------------------------------------- errors


def test_unknown_name_suggests():
    with pytest.raises(UnknownNameError, match=r"unknown objective 'worst_modality_acc' \(did you mean 'worst_"):
        make_objective("worst_modality_acc")
    with pytest.raises(UnknownNameError, match=r"unknown attack 'pgdd' \(did you mean 'pgd'\?\)"):
        obj("auc", attack="pgdd")


def test_unknown_param_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"no parameter 'atack' \(did you mean 'attack'\?\); its parameters: attack"):
        obj("worst_modality_auc", atack="pgd")
    with pytest.raises(ConfigError, match=r"no parameter 'eps'.*parameters: none"):
        obj("clean_accuracy", eps=0.1)


def test_missing_required_param():
    with pytest.raises(ConfigError, match=r"objective 'auc' needs parameter 'attack'"):
        make_objective("auc")
    with pytest.raises(ConfigError, match=r"objective 'worst_modality_auc' needs parameter 'attack'"):
        obj("worst_modality_auc", attack=None)


def test_bad_mode_and_bad_values():
    with pytest.raises(ConfigError, match=r"mode='maximize' is invalid; give one of max, min"):
        obj("clean_accuracy", mode="maximize")
    with pytest.raises(ConfigError, match=r"reduce='median' is invalid; give one of min, mean"):
        obj("missing_modality_accuracy", reduce="median")
    with pytest.raises(ConfigError, match=r"attack=3 is not an attack name"):
        obj("mean_robust_accuracy", attack=3)
    with pytest.raises(ConfigError, match=r"target='' is invalid"):
        obj("auc", attack="pgd", target="")
    with pytest.raises(ConfigError, match=r"reduce only applies without a modality"):
        obj("missing_modality_accuracy", modality="image", reduce="mean")
    with pytest.raises(ConfigError, match=r"neither a name .* nor a dict"):
        make_objective(["auc"])


def test_auc_needs_an_attack_with_a_budget():
    with pytest.raises(ConfigError, match=r"attack 'gaussian' has no budget eps.*pick one of bim, fgm, fgsm, pgd"):
        obj("auc", attack="gaussian")
    with pytest.raises(ConfigError, match=r"attack 'gaussian' has no budget eps"):
        obj("worst_modality_auc", attack="gaussian")
    with pytest.raises(ConfigError, match=r"'missing' is not a perturbation; use missing_modality_accuracy"):
        obj("auc", attack="missing")
    with pytest.raises(ConfigError, match=r"'clean' is not a perturbation; use clean_accuracy"):
        obj("mean_robust_accuracy", attack="clean")
    # gaussian is a perturbation, so the accuracy objectives take it
    assert obj("worst_modality_accuracy", attack="gaussian").key == "worst_modality_accuracy_gaussian"


def test_parse_objectives_needs_one_and_refuses_duplicates():
    assert [o.key for o in parse_objectives(["clean_accuracy"])] == ["clean_accuracy"]
    with pytest.raises(ConfigError, match="at least one objective"):
        parse_objectives([])
    with pytest.raises(ConfigError, match="share the metric key 'auc_pgd'"):
        parse_objectives([{"name": "auc", "attack": "pgd"}, {"name": "auc", "attack": "pgd", "target": None}])
    with pytest.raises(ConfigError, match="share the metric key 'clean_accuracy'"):
        parse_objectives(["clean_accuracy", {"name": "clean_accuracy", "mode": "min"}])
    with pytest.raises(ConfigError, match="must be a list"):
        parse_objectives("clean_accuracy")


# --------------------------------------------------------------------------- check against a grid


SMOKE = parse_grid("smoke", MODALITIES)


@pytest.mark.parametrize(
    "spec",
    [
        "clean_accuracy",
        {"name": "worst_modality_auc", "attack": "pgd"},
        "missing_modality_accuracy",
        {"name": "missing_modality_accuracy", "modality": "trajectory"},
        {"name": "mean_robust_accuracy", "attack": "gaussian"},
        {"name": "worst_modality_accuracy"},
        {"name": "auc", "attack": "fgsm", "target": "image"},
    ],
)
def test_check_passes_on_the_smoke_grid(spec):
    make_objective(spec).check(SMOKE)


def test_check_fails_with_a_clear_message():
    with pytest.raises(
        ConfigError,
        match=(
            r"^objective auc_bim needs bim cells; the grid has none — add bim to eval\.grid "
            r"or pick another objective$"
        ),
    ):
        obj("auc", attack="bim").check(SMOKE)
    with pytest.raises(
        ConfigError,
        match=r"^objective worst_modality_auc_pgd_l2 needs pgd_l2 cells on single modalities; the grid has none",
    ):
        obj("worst_modality_auc", attack="pgd_l2").check(SMOKE)
    with pytest.raises(ConfigError, match=r"needs pgd cells on sound; the grid has pgd only on image, trajectory"):
        obj("auc", attack="pgd", target="sound").check(SMOKE)
    with pytest.raises(ConfigError, match=r"needs missing-modality cells; the grid has none — add missing"):
        make_objective("missing_modality_accuracy").check(parse_grid("smoke", ("image",)))
    joint_only = [make_cell("clean"), make_cell("fgm", MODALITIES, eps=0.5)]
    with pytest.raises(ConfigError, match=r"needs fgm cells on single modalities"):
        obj("worst_modality_auc", attack="fgm").check(joint_only)
    obj("auc", attack="fgm").check(joint_only)
    with pytest.raises(ConfigError, match=r"needs a clean cell; the grid has none — add clean"):
        obj("auc", attack="fgm").check(joint_only[1:])


def test_objective_built_directly_is_validated_like_a_spec():
    assert Objective("auc", (("target", "image"), ("attack", "pgd"))) == obj("auc", attack="pgd", target="image")
    with pytest.raises(ConfigError, match="needs parameter 'attack'"):
        Objective("worst_modality_auc")
