"""Pareto fronts of a sweep: ranking, a markdown table, a PNG and a self-contained HTML page.

Pure numpy/pandas (matplotlib and plotly only inside the plotting functions), outside tune/: the
CLI's `pareto` command re-ranks a finished sweep from its trials.parquet, and that must not pay for
(or require) ray, optuna or mlflow. `ranking` holds the maths, `table` the text, `plot_data` what
both plots draw, `png` (matplotlib) and `html_page` (Plotly, with plotly.js embedded) the two renderings.
"""

from __future__ import annotations

from robustmm.pareto.html_page import plot_front_html
from robustmm.pareto.png import plot_front_png
from robustmm.pareto.ranking import FrontAxis, front, pareto_ranks, rank_trials
from robustmm.pareto.table import front_markdown

__all__ = ["FrontAxis", "front", "front_markdown", "pareto_ranks", "plot_front_html", "plot_front_png", "rank_trials"]
