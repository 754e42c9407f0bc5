"""The front as one self-contained interactive HTML page, filled into `front_template.html`.

The page's markup, style and script live in that package data file, not in code; this module only
computes what goes into its five placeholders (__TITLE__, __SUBTITLE__, __TABLE__, __SUMMARY__,
__DATA__) and escapes it for where it lands.
"""

from __future__ import annotations

import functools
import html
import json
import math
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustmm.pareto.plot_data import axis_label, plot_data, plotted_axes
from robustmm.pareto.ranking import PARAM_PREFIX, FrontAxis, check_axes, param_columns, rank_trials
from robustmm.pareto.table import front_table, is_missing, summary_line
from robustmm.results import write_atomic

__all__ = ["plot_front_html"]

TEMPLATE = "front_template.html"
_PLACEHOLDER = re.compile(r"__(TITLE|SUBTITLE|TABLE|SUMMARY|DATA)__")


@functools.cache
def _template() -> str:
    return resources.files("robustmm.pareto").joinpath(TEMPLATE).read_text(encoding="utf-8")


def _json_for_script(obj: Any) -> str:
    """JSON safe to embed in a <script> element: '<', '>' and '&' only occur inside JSON strings, where the
    \\u escapes mean the same thing, so no data value can close the element or open a comment."""
    s = json.dumps(obj, ensure_ascii=True, allow_nan=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _json_value(v: Any) -> Any:
    """Plain JSON value for a cell: NaN/NA to null, numpy scalars to Python ones, anything else to str."""
    if is_missing(v):
        return None
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        return float(v) if math.isfinite(v) else None
    return str(v)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], trials: Sequence[Any]) -> str:
    """The front table rendered server-side, so it is readable even where scripts are blocked."""
    if not rows:
        return "<p><em>no complete trials with all objective values</em></p>"
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        f'<tr data-trial="{esc(str(t), quote=True)}">' + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>"
        for t, r in zip(trials, rows, strict=True)
    )
    return f'<table class="front"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def plot_front_html(
    trials: pd.DataFrame, objectives: Sequence[FrontAxis], path: str | Path, title: str = "Pareto front"
) -> Path:
    """One self-contained interactive HTML file: SVG scatter drawn by inline vanilla JS from embedded JSON,
    hover/click for a trial's values and params, and the front table below.

    No CDN and no external request of any kind, because it is viewed offline and inside MLflow's artifact
    viewer, where a plotting library fetched from the network would simply not load.
    """
    objs = check_axes(trials, objectives)
    shown = plotted_axes(objs)
    d = plot_data(trials, objs)
    ranked = rank_trials(trials, objs)
    params = param_columns(trials)
    keys = [k for k, _, _ in objs]
    points = [
        {
            "trial": _json_value(rec["trial"]),
            "rank": int(rec["pareto_rank"]),
            "values": [_json_value(rec[k]) for k in keys],
            "params": {p.removeprefix(PARAM_PREFIX): _json_value(rec[p]) for p in params},
        }
        for rec in ranked[ranked["pareto_rank"] > 0].to_dict("records")
    ]
    data = {
        "objectives": [
            {"key": k, "mode": m, "label": lab, "percent": pc}
            for (k, m, lab), pc in zip(objs, d["percent"], strict=True)
        ],
        "axes": [axis_label(o, pc) for o, pc in zip(shown, d["percent"][:2], strict=True)],
        "params": [p.removeprefix(PARAM_PREFIX) for p in params],
        "points": points,
        "step": [[x, y] for x, y in d["step"]],
    }
    header, rows, f = front_table(trials, objs)
    subtitle = "Complete trials in grey, the Pareto front in red. Hover or click a point for its values and parameters."
    if len(objs) > 2:
        subtitle = f"Showing the first 2 of {len(objs)} objectives; ranks use all {len(objs)}. " + subtitle
    replacements = {
        "TITLE": html.escape(title),
        "SUBTITLE": html.escape(subtitle),
        "TABLE": _html_table(header, rows, list(f["trial"])),
        "SUMMARY": html.escape(summary_line(trials, len(rows))),
        "DATA": _json_for_script(data),
    }
    # One pass, so a placeholder-looking string inside a title or a param value is never substituted again.
    page = _PLACEHOLDER.sub(lambda m: replacements[m.group(1)], _template())

    def write(tmp: str) -> None:
        Path(tmp).write_text(page, encoding="utf-8")

    return write_atomic(path, write)
