"""The front as a PNG scatter, for reports and MLflow's artifact view.

matplotlib is imported inside the function, so ranking or tabulating a front never loads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from robustmm.pareto.plot_data import axis_label, plot_data, plot_title, plotted_axes
from robustmm.pareto.ranking import FrontAxis, check_axes
from robustmm.pareto.table import format_param
from robustmm.results import write_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["front_matplotlib_figure", "plot_front_png"]


def front_matplotlib_figure(trials: pd.DataFrame, objectives: Sequence[FrontAxis]) -> Figure:
    """Scatter of the first two objectives: complete trials in grey, the front highlighted and joined by
    its attainment staircase; every point labelled with its trial number (the dominated ones smaller,
    in grey), so any trial can be looked up in the table or in MLflow."""
    objs = check_axes(trials, objectives)
    shown = plotted_axes(objs)
    d = plot_data(trials, objs)

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure  # the OO API: no pyplot global state, nothing left open

    fig = Figure(figsize=(7.0, 5.0))
    ax = fig.add_subplot()
    ax.scatter(d["x"], d["y"], s=18, c="0.65", alpha=0.7, label=f"complete trials ({d['n_complete']})", zorder=2)
    if len(d["fx"]):
        sx, sy = zip(*d["step"], strict=True)
        ax.plot(sx, sy, color="tab:red", lw=1.2, alpha=0.8, zorder=3)
        ax.scatter(
            d["fx"],
            d["fy"],
            s=40,
            c="tab:red",
            edgecolors="black",
            linewidths=0.6,
            zorder=4,
            label=f"Pareto front ({len(d['fx'])})",
        )
    for t, rank, x, y in zip(d["points"]["trial"], d["points"]["pareto_rank"], d["x"], d["y"], strict=True):
        front = rank == 1
        ax.annotate(
            format_param(t),
            (x, y),
            xytext=(4, 4) if front else (3, -8),
            textcoords="offset points",
            fontsize=8 if front else 6.5,
            color="black" if front else "0.45",
            zorder=5 if front else 2,
        )
    if not d["n_complete"]:
        ax.text(0.5, 0.5, "no complete trials", transform=ax.transAxes, ha="center", va="center", color="0.4")
    ax.set_xlabel(axis_label(shown[0], d["percent"][0]))
    ax.set_ylabel(axis_label(shown[1], d["percent"][1]))
    ax.set_title(plot_title("Pareto front", objs), fontsize=10)
    ax.grid(True, lw=0.4, alpha=0.5)
    if d["n_complete"]:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def plot_front_png(trials: pd.DataFrame, objectives: Sequence[FrontAxis], path: str | Path) -> Path:
    """`front_matplotlib_figure` written as a PNG (atomically, so a reader never sees half a file)."""
    fig = front_matplotlib_figure(trials, objectives)
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
