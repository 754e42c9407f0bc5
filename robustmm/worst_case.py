"""Worst-case (robust) accuracy: the per-sample worst over attacks, budgets and attack variants.

Per-cell accuracy (the rows' `accuracy`) scores each grid cell on its own. But an L∞ or L2 ball
of radius ε' lies inside the ball of radius ε ≥ ε': whatever an attack found at ε' is also a
perturbation at ε, so true robust accuracy cannot rise with ε, and a curve that does rise
(gradient masking, a poor step size) overstates the robustness at the larger budget. Following
the AutoAttack convention, `worst_case_accuracy` of a row is the share of the evaluated samples
that are classified correctly

- on the clean input (ε' = 0 lies in every ball), for the nested families below;
- in every row of the same run (model, dataset, split, seed), the same target modalities and
  the same family, at a budget ε' ≤ the row's (every attack of the family, every step size and
  restart setting alike);
- in those rows of every attack variant of the model (`rgmc[o-detached]`, see
  `robustmm.models.base.variant_label`): the same trained model attacked another way.

Families (`family`): L∞ = fgsm, bim, pgd (attacks of norm ``linf``), nested in eps; L2 = fgm,
pgd_l2 (norm ``l2``), nested in eps; gaussian, nested in σ (a sample counts at σ only if it
survives every noise level up to σ; the draws differ per σ, so this is the stricter reading).
Every other perturbation is its own family and is not nested: clean and missing (the value is
the cell's own accuracy, folded over variants), certified (already monotone: a certified radius
that reaches ε reaches every ε' ≤ ε). Different targets are different families: a perturbation
of the image alone and one of image+trajectory are scored apart.

The value sits on the rows of the base model (`rgmc`), with its variants folded in; the rows of
a variant (`rgmc[o-detached]`) and the statistic rows (accuracy NaN) carry NaN.

Rows without a mask (written before masks existed) fall back: if any row that enters a value
lacks its mask, the value is the minimum of those rows' per-cell accuracies, i.e. a running
minimum over ε and a minimum over variants. That is an upper bound on the per-sample value (the
samples that survive every cell are a subset of those that survive any one of them).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd

from robustmm.attacks import ATTACKS
from robustmm.attacks.mask import decode_mask
from robustmm.errors import DataError
from robustmm.models.base import base_label

COLUMN = "worst_case_accuracy"
NESTED = {"linf": "eps", "l2": "eps", "gaussian": "sigma"}
"""Family -> the budget it is nested in."""
RUN_KEYS = ("dataset", "split", "seed")
"""Besides the base model: the columns that say which run a row belongs to (those present)."""
CELL_PARAMS = ("eps", "alpha", "sigma", "steps", "restarts")


def family(perturbation: str) -> str:
    """``linf`` / ``l2`` for the gradient attacks of that norm; any other perturbation is its own."""
    if perturbation in ATTACKS:
        entry = ATTACKS.get(perturbation)
        if entry.norm in ("linf", "l2") and not entry.certifies:
            return entry.norm
    return perturbation


def _numeric(df: pd.DataFrame, column: str) -> np.ndarray:
    if column not in df.columns:
        return np.full(len(df), math.nan)
    return pd.to_numeric(df[column], errors="coerce").to_numpy(float)


def _masks(df: pd.DataFrame, acc: np.ndarray) -> list[np.ndarray | None]:
    """Each row's decoded mask, or None where it has none; a mask must agree with the accuracy."""
    if "correct_mask" not in df.columns or "n" not in df.columns:
        return [None] * len(df)
    out: list[np.ndarray | None] = []
    for text, n, a in zip(df["correct_mask"].tolist(), df["n"].tolist(), acc, strict=True):
        if not isinstance(text, str) or not text:
            out.append(None)
            continue
        mask = decode_mask(text, int(n))
        if mask.size and not math.isnan(a) and abs(mask.mean() - a) > 1e-9:
            raise DataError(f"a row's correct_mask gives accuracy {mask.mean():.6g} but its accuracy is {a:.6g}")
        out.append(mask)
    return out


def _combine(rows: list[int], acc: np.ndarray, masks: list[np.ndarray | None]) -> float:
    """Share of samples correct in every one of `rows`; without all masks, the min of their accuracies."""
    if any(masks[j] is None for j in rows):
        return float(min(acc[j] for j in rows))
    arrays = [masks[j] for j in rows]
    if len({a.size for a in arrays}) > 1:  # type: ignore[union-attr]
        sizes = sorted({a.size for a in arrays})  # type: ignore[union-attr]
        raise DataError(f"rows of one run were evaluated on different numbers of samples ({sizes}); a run has one n")
    both = np.logical_and.reduce(arrays)
    return float(both.mean()) if both.size else math.nan


def worst_case_accuracy(df: pd.DataFrame) -> np.ndarray:
    """The module's worst-case accuracy for every row of `df` (NaN where it does not apply)."""
    n_rows = len(df)
    out = np.full(n_rows, math.nan)
    if n_rows == 0:
        return out
    lacking = [c for c in ("perturbation", "target", "accuracy") if c not in df.columns]
    if lacking:
        raise DataError(f"result rows lack column(s) {', '.join(lacking)} needed for the worst-case accuracy")
    pert = df["perturbation"].astype(str).to_numpy()
    target = df["target"].astype(str).to_numpy()
    acc = _numeric(df, "accuracy")
    labels = df["model"].astype(str).to_numpy() if "model" in df.columns else np.full(n_rows, "")
    base = np.array([base_label(m) for m in labels], dtype=object)
    fam = [family(p) for p in pert]
    params = {p: _numeric(df, p) for p in CELL_PARAMS}
    budget = np.array([params[NESTED[f]][i] if f in NESTED else math.nan for i, f in enumerate(fam)])
    cells = [
        (pert[i], target[i], *(None if math.isnan(params[p][i]) else params[p][i] for p in CELL_PARAMS))
        for i in range(n_rows)
    ]
    masks = _masks(df, acc)

    keys = pd.DataFrame({"_base": base, **{k: df[k].to_numpy() for k in RUN_KEYS if k in df.columns}})
    for run in keys.groupby(list(keys.columns), dropna=False, sort=False).indices.values():
        scored = [int(i) for i in run if not math.isnan(acc[i])]
        clean = [i for i in scored if pert[i] == "clean"]
        families: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i in scored:
            families[(target[i], fam[i])].append(i)
        for (_, f), members in families.items():
            for i in members:
                if labels[i] != base[i]:
                    continue  # a variant: folded into its model's row
                if f in NESTED and not math.isnan(budget[i]):
                    enter = [j for j in members if budget[j] <= budget[i]] + clean
                else:
                    enter = [j for j in members if cells[j] == cells[i]]
                out[i] = _combine(enter, acc, masks)
    return out


def with_worst_case(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with its `worst_case_accuracy` column (re)computed from the rows."""
    return df.assign(**{COLUMN: worst_case_accuracy(df)})
