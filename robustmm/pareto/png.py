"""The front as a PNG scatter, for reports and MLflow's artifact view.

matplotlib is imported inside the function, so ranking or tabulating a front never loads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from robustmm.pareto.plot_data import axis_label, plot_data, plot_title, plotted_axes
from robustmm.pareto.ranking import FrontAxis, check_axes
from robustmm.results import write_atomic

__all__ = ["plot_front_png"]


def plot_front_png(trials: pd.DataFrame, objectives: Sequence[FrontAxis], path: str | Path) -> Path:
    """Scatter of the first two objectives: complete trials in grey, the front highlighted, joined by its
    attainment staircase and labelled with trial numbers, so a trial can be looked up in the table."""
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
        for t, x, y in zip(d["front"]["trial"], d["fx"], d["fy"], strict=True):
            ax.annotate(str(t), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8, zorder=5)
    else:
        ax.text(0.5, 0.5, "no complete trials", transform=ax.transAxes, ha="center", va="center", color="0.4")
    ax.set_xlabel(axis_label(shown[0], d["percent"][0]))
    ax.set_ylabel(axis_label(shown[1], d["percent"][1]))
    ax.set_title(plot_title("Pareto front", objs), fontsize=10)
    ax.grid(True, lw=0.4, alpha=0.5)
    if d["n_complete"]:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
