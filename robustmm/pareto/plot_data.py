"""What both front plots draw, in display units: points, the front, its attainment staircase, labels.

Computed once here so the PNG and the HTML page of one sweep show the same points on the same axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from robustmm.errors import ConfigError
from robustmm.pareto.ranking import FrontAxis, objective_values, pareto_ranks, rank_trials, sorted_front
from robustmm.pareto.table import percent_flags

__all__ = ["axis_label", "plot_data", "plot_subtitle", "plot_title", "plotted_axes"]


def plotted_axes(objs: Sequence[FrontAxis]) -> list[FrontAxis]:
    """The two objectives a plot shows (the first two); fewer than two cannot be plotted."""
    if len(objs) < 2:
        raise ConfigError(f"a Pareto plot needs at least two objectives, got {len(objs)}: {[k for k, _, _ in objs]!r}")
    return list(objs[:2])


def plot_data(trials: pd.DataFrame, objs: Sequence[FrontAxis]) -> dict[str, Any]:
    """Everything both plots draw, in display units (x100 for % axes), computed once so PNG and HTML agree.

    `points` are the plotted rows (ranked, finite on both shown axes) with their `pareto_rank`, in the
    order of `x` and `y`, so each renderer can label every point with its trial number."""
    ranked = rank_trials(trials, objs)
    percent = percent_flags(trials, objs)
    (kx, _, _), (ky, _, _) = objs[0], objs[1]
    sx, sy = (100.0 if p else 1.0 for p in percent[:2])
    # Ranked rows are NaN-free; +-inf is still possible and has no place on a finite axis.
    ranked = ranked[(ranked["pareto_rank"] > 0) & np.isfinite(objective_values(ranked, [kx, ky])).all(axis=1)]
    f = sorted_front(ranked, objs)
    fx, fy = f[kx].to_numpy(float) * sx, f[ky].to_numpy(float) * sy
    # Attainment staircase: between consecutive front points (best first by x) the corner takes the
    # next point's x and this point's y, i.e. the worse value of each -- for any max/min combination.
    # With >2 objectives only the points non-dominated in the two shown ones lie on a staircase; the
    # rest are on the front through a hidden objective and stay highlighted but off the line.
    on_line = pareto_ranks(np.column_stack([fx, fy]), [objs[0][1], objs[1][1]]) == 1 if len(fx) else np.zeros(0, bool)
    lx, ly = fx[on_line], fy[on_line]
    step: list[tuple[float, float]] = []
    for i in range(len(lx)):
        if i:
            step.append((float(lx[i]), float(ly[i - 1])))
        step.append((float(lx[i]), float(ly[i])))
    return {
        "percent": percent,
        "points": ranked,
        "x": ranked[kx].to_numpy(float) * sx,
        "y": ranked[ky].to_numpy(float) * sy,
        "front": f,
        "fx": fx,
        "fy": fy,
        "step": step,
        "n_complete": len(ranked),
    }


def axis_label(obj: FrontAxis, percent: bool) -> str:
    return f"{obj[2]} (%)" if percent else obj[2]


def plot_subtitle(objs: Sequence[FrontAxis]) -> str:
    """What a 2-D plot of more than two objectives must say ('' for two)."""
    if len(objs) > 2:
        # In a 2-D projection of a k-D front some front points look dominated; say so rather than mislead.
        return f"showing the first 2 of {len(objs)} objectives; ranks use all {len(objs)}"
    return ""


def plot_title(title: str, objs: Sequence[FrontAxis]) -> str:
    sub = plot_subtitle(objs)
    return f"{title}\n({sub})" if sub else title
