"""Non-dominated sorting of a sweep's trials: which trials no other trial beats on every objective.

A robustness sweep trades clean accuracy against robustness, so there is no single best trial; what
the user needs is the set of trials that no other trial beats on every objective at once. This module
computes that set from a plain trials DataFrame (one row per trial: `trial`, `status`, one float column
per objective key, `param.*` columns). Pure numpy/pandas, so re-ranking a finished sweep never needs
ray, optuna or mlflow.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from robustmm.errors import ConfigError

__all__ = [
    "MODES",
    "PARAM_PREFIX",
    "FrontAxis",
    "check_axes",
    "complete_mask",
    "front",
    "objective_values",
    "param_columns",
    "pareto_ranks",
    "rank_trials",
    "sorted_front",
]

MODES = ("max", "min")
PARAM_PREFIX = "param."
# Upper bound on the elements of one (rows, n, k) comparison block, so ranking a large sweep
# does not allocate an n*n*k temporary at once.
_BLOCK_ELEMENTS = 1 << 22

FrontAxis = tuple[str, str, str]
"""One objective as the front sees it: (column key in the trials frame, 'max' or 'min', display label).

Not `robustmm.objectives.Objective` (a parsed objective spec that scores result rows): this is only
the name of the column a sweep wrote that objective's values to, plus how to sort and label it."""


def _check_modes(modes: Sequence[str], k: int) -> np.ndarray:
    """Validate modes and return +1 (max) / -1 (min) signs, so that 'larger is better' everywhere after."""
    modes = list(modes)
    if len(modes) != k:
        raise ConfigError(f"got {len(modes)} mode(s) {modes!r} for {k} objective column(s); need one 'max'/'min' each")
    for m in modes:
        if m not in MODES:
            raise ConfigError(f"objective mode {m!r} is invalid; expected 'max' or 'min'")
    return np.array([1.0 if m == "max" else -1.0 for m in modes])


def pareto_ranks(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """Non-dominated sorting: rank 1 is the Pareto front, rank 2 the front once rank 1 is removed, and so on.

    `values` is (n, k); `modes[j]` says whether column j is maximised or minimised. Point a dominates b
    iff a is no worse on every objective and strictly better on at least one, so identical points never
    dominate each other and share a rank. Rows with any NaN get rank 0 ("not ranked") and take no part
    in the sorting: a trial with a missing metric can neither be on the front nor push others off it.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 2:
        raise ConfigError(f"pareto_ranks needs a 2-D (trials, objectives) array, got shape {v.shape}")
    n, k = v.shape
    if k == 0:
        raise ConfigError("pareto_ranks needs at least one objective column, got 0")
    signs = _check_modes(modes, k)

    ranks = np.zeros(n, dtype=np.int64)
    idx = np.flatnonzero(~np.isnan(v).any(axis=1))
    m = idx.size
    if m == 0:
        return ranks
    g = v[idx] * signs  # now larger is better in every column

    # dom[i, j]: point i dominates point j. Built in row blocks to bound the temporary's size.
    dom = np.empty((m, m), dtype=bool)
    block = max(1, _BLOCK_ELEMENTS // (m * k))
    for s in range(0, m, block):
        a = g[s : s + block, None, :]
        dom[s : s + block] = (a >= g[None, :, :]).all(axis=2) & (a > g[None, :, :]).any(axis=2)

    # Peel fronts: a point joins the current front once every point dominating it has been ranked.
    dominated_by = dom.sum(axis=0)
    unranked = np.ones(m, dtype=bool)
    current = np.flatnonzero(dominated_by == 0)
    rank = 0
    while current.size:
        rank += 1
        ranks[idx[current]] = rank
        unranked[current] = False
        dominated_by -= dom[current].sum(axis=0)
        current = np.flatnonzero(unranked & (dominated_by == 0))
    return ranks


def _columns(trials: pd.DataFrame) -> str:
    return ", ".join(map(str, trials.columns))


def check_axes(trials: pd.DataFrame, objectives: Sequence[FrontAxis]) -> list[FrontAxis]:
    """Validate objectives against the frame up front, so every entry point fails with the same clear message."""
    objs = list(objectives) if objectives is not None else []
    if not objs:
        raise ConfigError("no objectives given; need at least one (key, mode, label) tuple")
    for col in ("trial", "status"):
        if col not in trials.columns:
            raise ConfigError(f"the trials frame has no {col!r} column (columns: {_columns(trials)})")
    out: list[FrontAxis] = []
    seen: set[str] = set()
    for obj in objs:
        if isinstance(obj, str) or not isinstance(obj, Sequence) or len(obj) != 3:
            raise ConfigError(f"objective {obj!r} is not a (key, mode, label) tuple")
        key, mode, label = obj
        if mode not in MODES:
            raise ConfigError(f"objective {key!r} has mode {mode!r}; expected 'max' or 'min'")
        if key not in trials.columns:
            raise ConfigError(
                f"objective key {key!r} is not a column of the trials frame (columns: {_columns(trials)})"
            )
        if key in seen:
            raise ConfigError(f"objective key {key!r} is listed twice")
        seen.add(key)
        out.append((str(key), str(mode), str(label)))
    return out


def objective_values(trials: pd.DataFrame, keys: Sequence[str]) -> np.ndarray:
    """Objective columns as a float matrix; a non-numeric column is a bug upstream, so say which one."""
    cols = []
    for key in keys:
        try:
            cols.append(pd.to_numeric(trials[key], errors="raise").to_numpy(dtype=float, na_value=np.nan))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"objective column {key!r} is not numeric ({e})") from None
    return np.column_stack(cols) if cols else np.empty((len(trials), 0))


def complete_mask(trials: pd.DataFrame) -> np.ndarray:
    """Rows whose trial ran to the end; only those are ranked, formatted or plotted."""
    return (trials["status"] == "complete").to_numpy(dtype=bool, na_value=False)


def rank_trials(trials: pd.DataFrame, objectives: Sequence[FrontAxis]) -> pd.DataFrame:
    """Copy of `trials` with an int `pareto_rank` column (0 = not ranked).

    Only complete trials are ranked: a pruned trial's metrics are from an early epoch and a failed or
    running one's are partial, so letting them in would put half-trained models on (or push real ones
    off) the front.
    """
    objs = check_axes(trials, objectives)
    out = trials.copy()
    ranks = np.zeros(len(out), dtype=np.int64)
    complete = complete_mask(out)
    if complete.any():
        values = objective_values(out.loc[complete], [k for k, _, _ in objs])
        ranks[complete] = pareto_ranks(values, [m for _, m, _ in objs])
    out["pareto_rank"] = ranks
    return out


def param_columns(trials: pd.DataFrame) -> list[str]:
    return [c for c in trials.columns if isinstance(c, str) and c.startswith(PARAM_PREFIX)]


def sorted_front(ranked: pd.DataFrame, objs: Sequence[FrontAxis]) -> pd.DataFrame:
    """Rank-1 rows, best first by the first objective (later objectives, then trial number, break ties)."""
    f = ranked[ranked["pareto_rank"] == 1]
    by = [k for k, _, _ in objs] + ["trial"]
    ascending = [m == "min" for _, m, _ in objs] + [True]
    return f.sort_values(by=by, ascending=ascending, kind="mergesort").reset_index(drop=True)


def front(trials: pd.DataFrame, objectives: Sequence[FrontAxis]) -> pd.DataFrame:
    """The Pareto front (rank-1 complete trials), best first by the first objective.

    Columns: trial, the objective keys, the `param.*` columns, pareto_rank -- what a reader needs to
    pick a trade-off and re-run it, without the bookkeeping columns of the full frame.
    """
    objs = check_axes(trials, objectives)
    f = sorted_front(rank_trials(trials, objs), objs)
    cols = list(dict.fromkeys(["trial", *(k for k, _, _ in objs), *param_columns(trials), "pareto_rank"]))
    return f[cols]
