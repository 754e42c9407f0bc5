"""The front as one self-contained interactive HTML page: a Plotly scatter and the front table.

plotly is imported inside the functions, so ranking or tabulating a front never loads it. The page
embeds plotly.js itself (about 4.6 MiB): it is viewed offline and inside MLflow's artifact viewer,
where a script fetched from a CDN would simply not load.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from robustmm.pareto.plot_data import axis_label, plot_data, plot_subtitle, plotted_axes
from robustmm.pareto.ranking import PARAM_PREFIX, FrontAxis, check_axes, param_columns
from robustmm.pareto.table import format_objective, format_param, front_table, summary_line
from robustmm.results import write_atomic

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

__all__ = ["front_plotly_figure", "plot_front_html"]

FRONT_RED = "#d62728"
# A fixed id for the plot's <div>: plotly's default is a random uuid, and the same sweep must give the same page.
DIV_ID = "pareto-front"
STYLE = """\
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em; color: #222; }
.hint { color: #555; margin: .2em 0 1em; }
table.front { border-collapse: collapse; }
table.front th, table.front td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
table.front th { background: #f3f3f3; }"""


def _text(s: str) -> str:
    """`s` as plotly text: plotly.js reads tags and entities in titles, labels and hover text, so the
    markup is escaped (and shown as written, since plotly decodes the entities)."""
    return html.escape(s)


def _grey(rank: int, worst: int) -> str:
    """Rank 2 dark grey to the worst rank light grey, so the legend and the eye read the ranks in order."""
    level = 0.45 + 0.33 * (rank - 2) / max(1, worst - 2)
    g = round(255 * level)
    return f"rgb({g},{g},{g})"


def _hover(objs: Sequence[FrontAxis], params: Sequence[str]) -> str:
    """One hovertemplate for every point: its customdata is [trial, rank, objective cells..., param cells...]."""
    lines = ["<b>trial %{customdata[0]}</b>: %{customdata[1]}"]
    names = [label for _, _, label in objs] + [p.removeprefix(PARAM_PREFIX) for p in params]
    # A '%' in a name would start a %{...} field; &#37; shows as '%' all the same.
    lines += [f"{_text(name).replace('%', '&#37;')}: %{{customdata[{i}]}}" for i, name in enumerate(names, start=2)]
    return "<br>".join(lines) + "<extra></extra>"  # empty <extra>: no second box with the trace name


def _rank_name(rank: int) -> str:
    return "Pareto front" if rank == 1 else f"rank {rank}"


def front_plotly_figure(trials: pd.DataFrame, objectives: Sequence[FrontAxis], title: str = "Pareto front") -> Figure:
    """Scatter of the first two objectives, one trace per Pareto rank (the legend shows or hides each): the
    front in red with its attainment staircase, later ranks in lighter greys, every point labelled with its
    trial number; hovering a point shows its rank, every objective and every param."""
    objs = check_axes(trials, objectives)
    shown = plotted_axes(objs)
    d = plot_data(trials, objs)
    params = param_columns(trials)

    import plotly.graph_objects as go

    points = d["points"]
    ranks = points["pareto_rank"].to_numpy(int)
    cells = [
        [
            _text(format_param(rec["trial"])),
            _rank_name(int(rec["pareto_rank"])),
            *(_text(format_objective(rec[k], pc)) for (k, _, _), pc in zip(objs, d["percent"], strict=True)),
            *(_text(format_param(rec[p])) for p in params),
        ]
        for rec in points.to_dict("records")
    ]
    hover = _hover(objs, params)
    worst = int(ranks.max()) if len(ranks) else 0
    fig = go.Figure()
    for rank in range(worst, 0, -1):  # the worst rank first, so the front is drawn on top
        idx = np.flatnonzero(ranks == rank)
        if not idx.size:  # every point of this rank had an infinite value on a shown axis
            continue
        front = rank == 1
        if front and d["step"]:
            sx, sy = zip(*d["step"], strict=True)
            fig.add_trace(
                go.Scatter(
                    x=list(sx),
                    y=list(sy),
                    mode="lines",
                    line={"color": FRONT_RED, "width": 1.5},
                    name="attainment staircase",
                    legendgroup=_rank_name(1),  # hidden and shown with the front's points
                    showlegend=False,
                    hoverinfo="skip",
                )
            )
        color = FRONT_RED if front else _grey(rank, worst)
        fig.add_trace(
            go.Scatter(
                x=[float(d["x"][i]) for i in idx],
                y=[float(d["y"][i]) for i in idx],
                mode="markers+text",
                name=_rank_name(rank),
                legendgroup=_rank_name(rank),
                legendrank=rank,
                text=[cells[i][0] for i in idx],
                textposition="top right",
                textfont={"size": 11 if front else 9, "color": "#222" if front else color},
                marker={
                    "size": 10 if front else 7,
                    "color": color,
                    "line": {"width": 0.8 if front else 0, "color": "black"},
                },
                customdata=[cells[i] for i in idx],
                hovertemplate=hover,
                cliponaxis=False,  # a label beside a point at the plot's edge is drawn, not cut off
            )
        )
    if not len(points):
        fig.add_annotation(
            text="no complete trials", xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, font={"color": "#777"}
        )
    subtitle = plot_subtitle(objs)
    fig.update_layout(
        template="plotly_white",
        title={"text": _text(title), **({"subtitle": {"text": _text(subtitle)}} if subtitle else {})},
        xaxis={"title": {"text": _text(axis_label(shown[0], d["percent"][0])), "standoff": 20}},
        yaxis={"title": {"text": _text(axis_label(shown[1], d["percent"][1])), "standoff": 10}},
        showlegend=True,  # also when the front is the only rank
        height=620,
        # A label is centred beside its point and kept inside the figure; the wide bottom margin gives it
        # room below the plot before it reaches the x-axis title (the y-axis title is left of every label).
        margin={"l": 80, "r": 30, "t": 90, "b": 110},
        hovermode="closest",
        hoverlabel={"align": "left", "bgcolor": "white", "font": {"size": 12, "color": "#222"}},
    )
    return fig


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The front table rendered server-side, so it is readable even where scripts are blocked."""
    if not rows:
        return "<p><em>no complete trials with all objective values</em></p>"
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="front"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def plot_front_html(
    trials: pd.DataFrame, objectives: Sequence[FrontAxis], path: str | Path, title: str = "Pareto front"
) -> Path:
    """`front_plotly_figure` with plotly.js embedded, the front table and the trial counts below it, as one
    HTML file that needs no network. The same trials give the same bytes."""
    objs = check_axes(trials, objectives)
    fig = front_plotly_figure(trials, objs, title)
    header, rows, _ = front_table(trials, objs)
    # plotly's JSON escapes '<', '>' and '/', so no title or param value can close its <script> element.
    # No "Produced with Plotly" link in the toolbar; an image saved from it is named after the page.
    config = {"displaylogo": False, "toImageButtonOptions": {"filename": "front"}}
    plot = fig.to_html(full_html=False, include_plotlyjs=True, div_id=DIV_ID, config=config)
    page = "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>\n{STYLE}\n</style>",
            "</head>",
            "<body>",
            plot,
            '<p class="hint">Hover a point for its values and parameters; click a legend entry to hide or show'
            " that rank; drag to zoom, double-click to zoom out.</p>",
            "<noscript><p>The plot needs JavaScript; the table below has the same front.</p></noscript>",
            _html_table(header, rows),
            f"<p>{html.escape(summary_line(trials, len(rows)))}</p>",
            "</body>",
            "</html>",
            "",
        ]
    )

    def write(tmp: str) -> None:
        Path(tmp).write_text(page, encoding="utf-8")

    return write_atomic(path, write)
