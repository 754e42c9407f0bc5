"""The correct-mask codec and the per-sample worst-case accuracy on small hand-made rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from result_rows import result_row

from robustmm.attacks.mask import decode_mask, encode_mask
from robustmm.errors import DataError
from robustmm.results import read_parquet, to_frame, write_parquet
from robustmm.worst_case import family, with_worst_case, worst_case_accuracy

NAN = math.nan
N = 8


def bits(correct: str) -> np.ndarray:
    """'11010000' -> a boolean vector, sample 0 first."""
    return np.array([c == "1" for c in correct])


def row(pert, target, correct, eps=NAN, sigma=NAN, alpha=NAN, model="rgmc", seed=0, masked=True):
    ok = bits(correct)
    steps = NAN if math.isnan(alpha) else 10.0
    mask = encode_mask(ok) if masked else ""
    return result_row(
        model,
        seed,
        pert,
        target,
        ok.mean(),
        eps=eps,
        alpha=alpha,
        sigma=sigma,
        steps=steps,
        n=len(ok),
        correct_mask=mask,
    )


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 13, 1000])
def test_mask_round_trip(n):
    ok = np.random.default_rng(n).random(n) > 0.4
    text = encode_mask(ok)
    assert isinstance(text, str) and len(text) <= 4 * ((n + 7) // 8 + 2) // 3 + 4
    back = decode_mask(text, n)
    assert back.dtype == bool and back.shape == (n,) and (back == ok).all()


def test_mask_errors_name_the_problem():
    with pytest.raises(DataError, match="n=9 samples need 2"):
        decode_mask(encode_mask(np.ones(8, bool)), 9)
    with pytest.raises(DataError, match="not base64"):
        decode_mask("no*base64", 8)
    with pytest.raises(DataError, match="1-D"):
        encode_mask(np.ones((2, 2), bool))


def test_families():
    assert [family(a) for a in ("fgsm", "bim", "pgd", "fgm", "pgd_l2")] == ["linf"] * 3 + ["l2"] * 2
    assert [family(a) for a in ("gaussian", "missing", "clean", "certified", "other")] == [
        "gaussian",
        "missing",
        "clean",
        "certified",
        "other",
    ]


# Eight samples. Clean gets sample 7 wrong. On the image, L∞: FGSM at ε=.1 loses sample 0, PGD at
# ε=.1 (two step sizes) loses 1 with one and 2 with the other, PGD at ε=.2 loses 3 only (its
# per-cell accuracy rises above the ε=.1 cells), BIM at ε=.3 loses 4 only; the attack variant
# loses sample 5 at ε=.2. L2 (FGM) is a family of its own and so is the trajectory target.
ROWS = [
    row("clean", "none", "11111110"),
    row("missing", "image", "00111111"),
    row("fgsm", "image", "01111111", eps=0.1),
    row("pgd", "image", "10111111", eps=0.1, alpha=0.01),
    row("pgd", "image", "11011111", eps=0.1, alpha=0.02),
    row("pgd", "image", "11101111", eps=0.2, alpha=0.05),
    row("pgd", "image", "11111111", eps=0.2, alpha=0.05, model="rgmc[o-detached]"),
    row("pgd", "image", "11111011", eps=0.2, alpha=0.05, model="rgmc[o-detached]"),
    row("bim", "image", "11110111", eps=0.3, alpha=0.05),
    row("fgm", "image", "11111101", eps=0.5),
    row("pgd", "trajectory", "11111111", eps=0.2, alpha=0.05),
    row("gaussian", "image", "01111111", sigma=0.25),
    row("gaussian", "image", "10111111", sigma=0.5),
]


def _worst(df: pd.DataFrame, **where) -> list[float]:
    sel = np.ones(len(df), bool)
    for k, v in where.items():
        sel &= (df[k] == v).to_numpy()
    return df.loc[sel, "worst_case_accuracy"].tolist()


def test_worst_case_is_nested_in_eps_within_the_family_and_folds_variants():
    df = to_frame(ROWS)
    assert df["accuracy"].tolist()[:2] == [7 / 8, 6 / 8]
    assert _worst(df, perturbation="clean") == [7 / 8]  # not nested: its own accuracy
    assert _worst(df, perturbation="missing") == [6 / 8]
    # ε=.1: clean (7) ∧ FGSM (0) ∧ both PGD step sizes (1, 2) -> samples 3-6 -> 4/8, the same for every cell at .1
    assert _worst(df, eps=0.1) == [4 / 8] * 3
    # ε=.2: also PGD (3) and its variant (5): samples 4, 6 -> 2/8, though the per-cell accuracy is 7/8
    assert _worst(df, eps=0.2, target="image", model="rgmc") == [2 / 8]
    # ε=.3: BIM loses 4 -> sample 6 alone
    assert _worst(df, eps=0.3) == [1 / 8]
    # L2 is another family: clean ∧ FGM -> 6/8; the trajectory target another curve: clean only -> 7/8
    assert _worst(df, perturbation="fgm") == [6 / 8]
    assert _worst(df, target="trajectory") == [7 / 8]
    # gaussian nested in σ: σ=.25 -> clean ∧ {0} -> 6/8; σ=.5 -> also 1 -> 5/8
    assert _worst(df, perturbation="gaussian") == [6 / 8, 5 / 8]
    # the variant's rows are folded into the model's
    assert all(math.isnan(v) for v in _worst(df, model="rgmc[o-detached]"))


def test_worst_case_never_rises_with_eps_and_never_exceeds_the_cell():
    df = to_frame(ROWS)
    image = df[(df["model"] == "rgmc") & (df["target"] == "image") & df["eps"].notna() & (df["perturbation"] != "fgm")]
    curve = image.groupby("eps")["worst_case_accuracy"].max()
    assert curve.is_monotonic_decreasing
    scored = df[df["worst_case_accuracy"].notna()]
    assert len(scored) == len(df) - 2 and (scored["worst_case_accuracy"] <= scored["accuracy"] + 1e-12).all()


def test_runs_are_scored_apart():
    other_seed = [{**r, "seed": 1} for r in ROWS if r["perturbation"] in ("clean", "pgd")]
    other_seed[0] = row("clean", "none", "11111111", seed=1)  # seed 1 is right on sample 7 too
    df = to_frame(ROWS + other_seed)
    # seed 1 has no FGSM: ε=.1 is clean ∧ PGD (1, 2) -> 6/8
    assert _worst(df, seed=1, eps=0.1) == [6 / 8] * 2
    assert _worst(df, seed=0, eps=0.1) == [4 / 8] * 3


def test_without_masks_the_fallback_is_the_running_min_over_eps_and_variants():
    old = [{k: v for k, v in r.items() if k != "correct_mask"} for r in ROWS]
    df = to_frame(old)
    assert (df["correct_mask"] == "").all()
    # ε=.1: min(clean 7, FGSM 7, PGD 7, 7)/8; ε=.2 adds PGD 7 and the variant's 8 and 7 -> still 7/8
    assert _worst(df, eps=0.1) == [7 / 8] * 3 and _worst(df, eps=0.2, model="rgmc", target="image") == [7 / 8]
    # an upper bound on the per-sample value
    masked = to_frame(ROWS)
    both = df["worst_case_accuracy"].fillna(1) >= masked["worst_case_accuracy"].fillna(1)
    assert both.all()
    # one row without its mask is enough to fall back for every value it enters
    mixed = [dict(r) for r in ROWS]
    mixed[3]["correct_mask"] = ""
    assert _worst(to_frame(mixed), eps=0.1) == [7 / 8] * 3
    assert _worst(to_frame(mixed), perturbation="fgm") == [6 / 8]  # untouched: masks all there


def test_rows_written_before_masks_read_back(tmp_path):
    old = [{k: v for k, v in r.items() if k not in ("correct_mask",)} for r in ROWS]
    path = tmp_path / "old.parquet"
    pd.DataFrame(old).to_parquet(path)
    back = read_parquet(path)
    assert (back["correct_mask"] == "").all() and back["worst_case_accuracy"].notna().sum() == len(ROWS) - 2
    new = read_parquet(write_parquet(to_frame(ROWS), tmp_path / "new.parquet"))
    assert new["correct_mask"].tolist() == [r["correct_mask"] for r in ROWS]
    pd.testing.assert_series_equal(new["worst_case_accuracy"], to_frame(ROWS)["worst_case_accuracy"])


def test_statistic_rows_have_no_worst_case_and_bad_masks_are_refused():
    stat = {**row("clean", "none", "11111111"), "perturbation": "certified_radius", "accuracy": NAN, "value": 0.3}
    stat["correct_mask"] = ""
    assert math.isnan(worst_case_accuracy(pd.DataFrame([*ROWS, stat]))[-1])
    liar = {**ROWS[0], "accuracy": 0.5}
    with pytest.raises(DataError, match="correct_mask gives accuracy 0.875"):
        with_worst_case(pd.DataFrame([liar]))
    short = row("fgsm", "image", "0111", eps=0.1)
    with pytest.raises(DataError, match="different numbers of samples"):
        with_worst_case(pd.DataFrame([ROWS[0], short]))
