"""Pareto fronts of a sweep: non-dominated sorting, a markdown table, a PNG and a self-contained HTML plot.

A robustness sweep trades clean accuracy against robustness, so there is no single best trial; what
the user needs is the set of trials that no other trial beats on every objective at once. This module
computes that set from a plain trials DataFrame (one row per trial: `trial`, `status`, one float column
per objective key, `param.*` columns) and renders it.

It is deliberately pure numpy/pandas: the CLI's `pareto` command imports it to re-plot a finished sweep,
and that must not pay for (or require) ray, optuna or mlflow. matplotlib is imported lazily inside the
PNG function for the same reason.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustmm.errors import ConfigError
from robustmm.results import write_atomic

__all__ = ["front", "front_markdown", "pareto_ranks", "plot_front_html", "plot_front_png", "rank_trials"]

MODES = ("max", "min")
PARAM_PREFIX = "param."
# Upper bound on the elements of one (rows, n, k) comparison block, so ranking a large sweep
# does not allocate an n*n*k temporary at once.
_BLOCK_ELEMENTS = 1 << 22

Objective = tuple[str, str, str]


# ----------------------------------------------------------------------------------------------- ranking


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


def _check_objectives(trials: pd.DataFrame, objectives: Sequence[Objective]) -> list[Objective]:
    """Validate objectives against the frame up front, so every entry point fails with the same clear message."""
    objs = list(objectives) if objectives is not None else []
    if not objs:
        raise ConfigError("no objectives given; need at least one (key, mode, label) tuple")
    for col in ("trial", "status"):
        if col not in trials.columns:
            raise ConfigError(f"the trials frame has no {col!r} column (columns: {_columns(trials)})")
    out: list[Objective] = []
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


def _objective_values(trials: pd.DataFrame, keys: Sequence[str]) -> np.ndarray:
    """Objective columns as a float matrix; a non-numeric column is a bug upstream, so say which one."""
    cols = []
    for key in keys:
        try:
            cols.append(pd.to_numeric(trials[key], errors="raise").to_numpy(dtype=float, na_value=np.nan))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"objective column {key!r} is not numeric ({e})") from None
    return np.column_stack(cols) if cols else np.empty((len(trials), 0))


def rank_trials(trials: pd.DataFrame, objectives: Sequence[Objective]) -> pd.DataFrame:
    """Copy of `trials` with an int `pareto_rank` column (0 = not ranked).

    Only complete trials are ranked: a pruned trial's metrics are from an early epoch and a failed or
    running one's are partial, so letting them in would put half-trained models on (or push real ones
    off) the front.
    """
    objs = _check_objectives(trials, objectives)
    out = trials.copy()
    ranks = np.zeros(len(out), dtype=np.int64)
    complete = (out["status"] == "complete").to_numpy(dtype=bool, na_value=False)
    if complete.any():
        values = _objective_values(out.loc[complete], [k for k, _, _ in objs])
        ranks[complete] = pareto_ranks(values, [m for _, m, _ in objs])
    out["pareto_rank"] = ranks
    return out


def _param_columns(trials: pd.DataFrame) -> list[str]:
    return [c for c in trials.columns if isinstance(c, str) and c.startswith(PARAM_PREFIX)]


def _sorted_front(ranked: pd.DataFrame, objs: Sequence[Objective]) -> pd.DataFrame:
    """Rank-1 rows, best first by the first objective (later objectives, then trial number, break ties)."""
    f = ranked[ranked["pareto_rank"] == 1]
    by = [k for k, _, _ in objs] + ["trial"]
    ascending = [m == "min" for _, m, _ in objs] + [True]
    return f.sort_values(by=by, ascending=ascending, kind="mergesort").reset_index(drop=True)


def front(trials: pd.DataFrame, objectives: Sequence[Objective]) -> pd.DataFrame:
    """The Pareto front (rank-1 complete trials), best first by the first objective.

    Columns: trial, the objective keys, the `param.*` columns, pareto_rank -- what a reader needs to
    pick a trade-off and re-run it, without the bookkeeping columns of the full frame.
    """
    objs = _check_objectives(trials, objectives)
    f = _sorted_front(rank_trials(trials, objs), objs)
    cols = list(dict.fromkeys(["trial", *(k for k, _, _ in objs), *_param_columns(trials), "pareto_rank"]))
    return f[cols]


# -------------------------------------------------------------------------------------------- formatting


def _percent_flags(trials: pd.DataFrame, objs: Sequence[Objective]) -> list[bool]:
    """Per objective: show as % iff every finite value among complete trials lies in [0, 1].

    Decided over all complete trials, not just the front, so the table, PNG and HTML of one sweep agree.
    """
    complete = trials[(trials["status"] == "complete").to_numpy(dtype=bool, na_value=False)]
    values = _objective_values(complete, [k for k, _, _ in objs])
    flags = []
    for j in range(len(objs)):
        col = values[:, j]
        col = col[np.isfinite(col)]
        flags.append(bool(col.size) and bool(((col >= 0.0) & (col <= 1.0)).all()))
    return flags


def _is_missing(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    try:
        return bool(isinstance(v, float | np.floating) and math.isnan(v))
    except TypeError:
        return False


def _fmt_objective(v: Any, percent: bool) -> str:
    if _is_missing(v):
        return ""
    v = float(v)
    return f"{100.0 * v:.2f}%" if percent else f"{v:.4g}"


def _fmt_param(v: Any) -> str:
    """Floats to 4 significant digits (sweeps sample them on log scales, so more digits are noise)."""
    if _is_missing(v):
        return ""
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        return f"{float(v):.4g}"
    return str(v)


def _status_counts(trials: pd.DataFrame) -> dict[str, int]:
    counts = trials["status"].value_counts()
    return {s: int(counts.get(s, 0)) for s in ("complete", "pruned", "failed", "running", "interrupted")}


def _summary_line(trials: pd.DataFrame, n_front: int) -> str:
    c = _status_counts(trials)
    line = f"{c['complete']} complete trials, {n_front} on the front; {c['pruned']} pruned, {c['failed']} failed"
    return line + (f", {c['interrupted']} interrupted" if c["interrupted"] else "")


def _front_table(trials: pd.DataFrame, objs: Sequence[Objective]) -> tuple[list[str], list[list[str]], pd.DataFrame]:
    """Header and formatted cells of the front table, shared by the markdown and HTML renderings."""
    f = front(trials, objs)
    percent = _percent_flags(trials, objs)
    params = _param_columns(trials)
    header = ["trial", *(label for _, _, label in objs), *(p.removeprefix(PARAM_PREFIX) for p in params)]
    rows = []
    for rec in f.to_dict("records"):
        row = [_fmt_param(rec["trial"])]
        row += [_fmt_objective(rec[k], pc) for (k, _, _), pc in zip(objs, percent, strict=True)]
        row += [_fmt_param(rec[p]) for p in params]
        rows.append(row)
    return header, rows, f


def _md_cell(s: str) -> str:
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def front_markdown(trials: pd.DataFrame, objectives: Sequence[Objective], title: str | None = None) -> str:
    """The front as a markdown table plus one line of trial counts by status.

    The count line matters as much as the table: a front of 3 out of 5 complete trials (with 40 pruned)
    says something very different from 3 out of 200.
    """
    objs = _check_objectives(trials, objectives)
    header, rows, _ = _front_table(trials, objs)
    out = []
    if title:
        out += [f"## {title}", ""]
    if rows:
        out.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
        out.append("|" + "|".join(" ---: " if i < 1 + len(objs) else " --- " for i in range(len(header))) + "|")
        out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    else:
        out.append("_no complete trials with all objective values_")
    out += ["", _summary_line(trials, len(rows))]
    return "\n".join(out) + "\n"


# -------------------------------------------------------------------------------------------------- plots


def _plot_objectives(objs: Sequence[Objective]) -> list[Objective]:
    if len(objs) < 2:
        raise ConfigError(f"a Pareto plot needs at least two objectives, got {len(objs)}: {[k for k, _, _ in objs]!r}")
    return list(objs[:2])


def _plot_data(trials: pd.DataFrame, objs: Sequence[Objective]) -> dict[str, Any]:
    """Everything both plots draw, in display units (x100 for % axes), computed once so PNG and HTML agree."""
    ranked = rank_trials(trials, objs)
    percent = _percent_flags(trials, objs)
    (kx, _, _), (ky, _, _) = objs[0], objs[1]
    sx, sy = (100.0 if p else 1.0 for p in percent[:2])
    # Ranked rows are NaN-free; +-inf is still possible and has no place on a finite axis.
    ranked = ranked[(ranked["pareto_rank"] > 0) & np.isfinite(_objective_values(ranked, [kx, ky])).all(axis=1)]
    f = _sorted_front(ranked, objs)
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
        "x": ranked[kx].to_numpy(float) * sx,
        "y": ranked[ky].to_numpy(float) * sy,
        "front": f,
        "fx": fx,
        "fy": fy,
        "step": step,
        "n_complete": len(ranked),
    }


def _axis_label(obj: Objective, percent: bool) -> str:
    return f"{obj[2]} (%)" if percent else obj[2]


def _plot_title(title: str, objs: Sequence[Objective]) -> str:
    if len(objs) > 2:
        # In a 2-D projection of a k-D front some front points look dominated; say so rather than mislead.
        return f"{title}\n(showing the first 2 of {len(objs)} objectives; ranks use all {len(objs)})"
    return title


def plot_front_png(trials: pd.DataFrame, objectives: Sequence[Objective], path: str | Path) -> Path:
    """Scatter of the first two objectives: complete trials in grey, the front highlighted, joined by its
    attainment staircase and labelled with trial numbers, so a trial can be looked up in the table."""
    objs = _check_objectives(trials, objectives)
    shown = _plot_objectives(objs)
    d = _plot_data(trials, objs)

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
    ax.set_xlabel(_axis_label(shown[0], d["percent"][0]))
    ax.set_ylabel(_axis_label(shown[1], d["percent"][1]))
    ax.set_title(_plot_title("Pareto front", objs), fontsize=10)
    ax.grid(True, lw=0.4, alpha=0.5)
    if d["n_complete"]:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))


def _json_for_script(obj: Any) -> str:
    """JSON safe to embed in a <script> element: '<', '>' and '&' only occur inside JSON strings, where the
    \\u escapes mean the same thing, so no data value can close the element or open a comment."""
    s = json.dumps(obj, ensure_ascii=True, allow_nan=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _json_value(v: Any) -> Any:
    """Plain JSON value for a cell: NaN/NA to null, numpy scalars to Python ones, anything else to str."""
    if _is_missing(v):
        return None
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        return float(v) if math.isfinite(v) else None
    return str(v)


_HTML_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>__TITLE__</title>
<style>
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .2em; }
.sub { color: #555; margin: 0 0 1em; }
#wrap { position: relative; display: inline-block; }
svg { background: #fff; border: 1px solid #ddd; }
.pt { fill: #aaa; fill-opacity: .7; cursor: pointer; }
.pt.front { fill: #d62728; fill-opacity: 1; stroke: #000; stroke-width: .6; }
.pt.hl { stroke: #1f77b4; stroke-width: 3; }
.lbl { font-size: 11px; fill: #333; pointer-events: none; }
.axis text { font-size: 11px; fill: #444; }
.axis line { stroke: #ccc; }
.step { fill: none; stroke: #d62728; stroke-width: 1.4; stroke-opacity: .8; }
#tip { position: absolute; display: none; background: #fff; border: 1px solid #888; border-radius: 4px;
  padding: 6px 8px; font-size: 12px; box-shadow: 0 2px 6px rgba(0,0,0,.2); pointer-events: none;
  white-space: nowrap; }
#tip table td { padding: 0 6px 0 0; }
table.front { border-collapse: collapse; margin-top: 1em; }
table.front th, table.front td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
table.front th { background: #f3f3f3; }
table.front tr.hl td { background: #fde7e7; }
</style>
</head>
<body>
<h1>__TITLE__</h1>
<p class="sub">__SUBTITLE__</p>
<noscript><p>The plot needs JavaScript; the table below has the same front.</p></noscript>
<div id="wrap"><svg id="plot" width="760" height="500" role="img" aria-label="Pareto front scatter plot"></svg>
<div id="tip"></div></div>
__TABLE__
<p>__SUMMARY__</p>
<script type="application/json" id="pareto-data">__DATA__</script>
<script>
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("pareto-data").textContent);
  var svg = document.getElementById("plot"), tip = document.getElementById("tip");
  var NS = svg.namespaceURI, W = 760, H = 500, M = {l: 70, r: 20, t: 15, b: 50};
  var pinned = null;
  function el(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    (parent || svg).appendChild(e);
    return e;
  }
  function fmtObj(v, j) {
    if (v === null) return "";
    return D.objectives[j].percent ? (100 * v).toFixed(2) + "%" : Number(v.toPrecision(4)).toString();
  }
  function fmtParam(v) {
    if (v === null) return "";
    if (typeof v === "number" && !Number.isInteger(v)) return Number(v.toPrecision(4)).toString();
    return String(v);
  }
  function ticks(lo, hi) {
    var raw = (hi - lo) / 6, p = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / p;
    var step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p, out = [];
    for (var t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(+t.toPrecision(12));
    return out;
  }
  function extent(vals) {
    var lo = Math.min.apply(null, vals), hi = Math.max.apply(null, vals);
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    var pad = hi > lo ? 0.06 * (hi - lo) : (Math.abs(lo) * 0.05 || 0.5);
    return [lo - pad, hi + pad];
  }
  var pts = D.points, sx = D.objectives[0].percent ? 100 : 1, sy = D.objectives[1].percent ? 100 : 1;
  function val(v, s) { return v === null ? NaN : v * s; }  // null = non-finite in the JSON
  var xs = pts.map(function (p) { return val(p.values[0], sx); });
  var ys = pts.map(function (p) { return val(p.values[1], sy); });
  var ex = extent(xs.filter(isFinite)), ey = extent(ys.filter(isFinite));
  function X(v) { return M.l + (v - ex[0]) / (ex[1] - ex[0]) * (W - M.l - M.r); }
  function Y(v) { return H - M.b - (v - ey[0]) / (ey[1] - ey[0]) * (H - M.t - M.b); }
  var ax = el("g", {"class": "axis"});
  ticks(ex[0], ex[1]).forEach(function (t) {
    el("line", {x1: X(t), x2: X(t), y1: M.t, y2: H - M.b}, ax);
    el("text", {x: X(t), y: H - M.b + 16, "text-anchor": "middle"}, ax).textContent = t;
  });
  ticks(ey[0], ey[1]).forEach(function (t) {
    el("line", {x1: M.l, x2: W - M.r, y1: Y(t), y2: Y(t)}, ax);
    el("text", {x: M.l - 6, y: Y(t) + 4, "text-anchor": "end"}, ax).textContent = t;
  });
  el("rect", {x: M.l, y: M.t, width: W - M.l - M.r, height: H - M.t - M.b, fill: "none", stroke: "#888"});
  el("text", {x: (M.l + W - M.r) / 2, y: H - 10, "text-anchor": "middle"}).textContent = D.axes[0];
  el("text", {x: 16, y: (M.t + H - M.b) / 2, "text-anchor": "middle",
              transform: "rotate(-90 16 " + (M.t + H - M.b) / 2 + ")"}).textContent = D.axes[1];
  if (!pts.length) {
    el("text", {x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#777"}).textContent = "no complete trials";
  }
  if (D.step.length) {
    el("path", {"class": "step", d: D.step.map(function (p, i) {
      return (i ? "L" : "M") + X(p[0]).toFixed(2) + " " + Y(p[1]).toFixed(2);
    }).join(" ")});
  }
  var rows = {};
  Array.prototype.forEach.call(document.querySelectorAll("table.front tbody tr"), function (tr) {
    rows[tr.getAttribute("data-trial")] = tr;
  });
  function show(p, c) {
    tip.textContent = "";
    var h = document.createElement("b");
    h.textContent = "trial " + p.trial + (p.rank === 1 ? " (Pareto front)" : " (rank " + p.rank + ")");
    tip.appendChild(h);
    var t = document.createElement("table");
    function row(k, v) {
      var tr = t.insertRow(), a = tr.insertCell(), b = tr.insertCell();
      a.textContent = k; b.textContent = v;
    }
    D.objectives.forEach(function (o, j) { row(o.label, fmtObj(p.values[j], j)); });
    D.params.forEach(function (k) { row(k, fmtParam(p.params[k])); });
    tip.appendChild(t);
    var r = svg.getBoundingClientRect(), w = document.getElementById("wrap").getBoundingClientRect();
    var cx = +c.getAttribute("cx"), cy = +c.getAttribute("cy");
    tip.style.display = "block";
    var left = r.left - w.left + cx + 12, top = r.top - w.top + cy + 12;
    if (left + tip.offsetWidth > w.width) left = Math.max(0, left - tip.offsetWidth - 24);
    tip.style.left = left + "px"; tip.style.top = top + "px";
  }
  function highlight(p, c, on) {
    c.classList.toggle("hl", on);
    var tr = rows[String(p.trial)];
    if (tr) tr.classList.toggle("hl", on);
  }
  // Grey points first, so the front is drawn on top; points with a non-finite value are not drawable.
  var drawable = pts.map(function (p, i) { return i; })
    .filter(function (i) { return isFinite(xs[i]) && isFinite(ys[i]); });
  var order = drawable.filter(function (i) { return pts[i].rank !== 1; })
    .concat(drawable.filter(function (i) { return pts[i].rank === 1; }));
  var circles = {};
  order.forEach(function (i) {
    var p = pts[i], front = p.rank === 1;
    var c = el("circle", {"class": front ? "pt front" : "pt", cx: X(xs[i]).toFixed(2), cy: Y(ys[i]).toFixed(2),
                          r: front ? 5.5 : 4, tabindex: 0});
    circles[String(p.trial)] = [p, c];
    if (front) {
      el("text", {"class": "lbl", x: X(xs[i]) + 6, y: Y(ys[i]) - 6}).textContent = p.trial;
    }
    function enter() { if (!pinned) { show(p, c); highlight(p, c, true); } }
    function leave() { if (!pinned) { tip.style.display = "none"; highlight(p, c, false); } }
    c.addEventListener("mouseenter", enter); c.addEventListener("focus", enter);
    c.addEventListener("mouseleave", leave); c.addEventListener("blur", leave);
    c.addEventListener("click", function (e) {
      e.stopPropagation();
      if (pinned) highlight(pinned[0], pinned[1], false);
      pinned = pinned && pinned[1] === c ? null : [p, c];
      if (pinned) { show(p, c); highlight(p, c, true); } else { tip.style.display = "none"; }
    });
  });
  document.addEventListener("click", function () {
    if (pinned) { highlight(pinned[0], pinned[1], false); pinned = null; tip.style.display = "none"; }
  });
  Object.keys(rows).forEach(function (k) {
    var hit = circles[k];
    if (!hit) return;
    rows[k].addEventListener("mouseenter", function () {
      if (!pinned) { show(hit[0], hit[1]); highlight(hit[0], hit[1], true); }
    });
    rows[k].addEventListener("mouseleave", function () {
      if (!pinned) { tip.style.display = "none"; highlight(hit[0], hit[1], false); }
    });
  });
})();
</script>
</body>
</html>
"""


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
    trials: pd.DataFrame, objectives: Sequence[Objective], path: str | Path, title: str = "Pareto front"
) -> Path:
    """One self-contained interactive HTML file: SVG scatter drawn by inline vanilla JS from embedded JSON,
    hover/click for a trial's values and params, and the front table below.

    No CDN and no external request of any kind, because it is viewed offline and inside MLflow's artifact
    viewer, where a plotting library fetched from the network would simply not load.
    """
    objs = _check_objectives(trials, objectives)
    shown = _plot_objectives(objs)
    d = _plot_data(trials, objs)
    ranked = rank_trials(trials, objs)
    params = _param_columns(trials)
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
        "axes": [_axis_label(o, pc) for o, pc in zip(shown, d["percent"][:2], strict=True)],
        "params": [p.removeprefix(PARAM_PREFIX) for p in params],
        "points": points,
        "step": [[x, y] for x, y in d["step"]],
    }
    header, rows, f = _front_table(trials, objs)
    subtitle = "Complete trials in grey, the Pareto front in red. Hover or click a point for its values and parameters."
    if len(objs) > 2:
        subtitle = f"Showing the first 2 of {len(objs)} objectives; ranks use all {len(objs)}. " + subtitle
    replacements = {
        "TITLE": html.escape(title),
        "SUBTITLE": html.escape(subtitle),
        "TABLE": _html_table(header, rows, list(f["trial"])),
        "SUMMARY": html.escape(_summary_line(trials, len(rows))),
        "DATA": _json_for_script(data),
    }
    # One pass, so a placeholder-looking string inside a title or a param value is never substituted again.
    page = re.sub(r"__(TITLE|SUBTITLE|TABLE|SUMMARY|DATA)__", lambda m: replacements[m.group(1)], _HTML_TEMPLATE)

    def write(tmp: str) -> None:
        Path(tmp).write_text(page, encoding="utf-8")

    return write_atomic(path, write)
