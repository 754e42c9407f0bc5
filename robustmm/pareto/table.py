"""The front as text: cell formatting, the trial-count line and the markdown table.

The HTML page renders the same header and cells (`front_table`), so the table a user reads in the
terminal, in MLflow and in the browser is one table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from robustmm.pareto.ranking import (
    PARAM_PREFIX,
    FrontAxis,
    check_axes,
    complete_mask,
    front,
    objective_values,
    param_columns,
    rank_trials,
)

__all__ = [
    "format_objective",
    "format_param",
    "front_markdown",
    "front_table",
    "is_missing",
    "percent_flags",
    "summary_line",
    "trials_text",
]


def percent_flags(trials: pd.DataFrame, objs: Sequence[FrontAxis]) -> list[bool]:
    """Per objective: show as % iff every finite value among complete trials lies in [0, 1].

    Decided over all complete trials, not just the front, so the table, PNG and HTML of one sweep agree.
    """
    complete = trials[complete_mask(trials)]
    values = objective_values(complete, [k for k, _, _ in objs])
    flags = []
    for j in range(len(objs)):
        col = values[:, j]
        col = col[np.isfinite(col)]
        flags.append(bool(col.size) and bool(((col >= 0.0) & (col <= 1.0)).all()))
    return flags


def is_missing(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    try:
        return bool(isinstance(v, float | np.floating) and math.isnan(v))
    except TypeError:
        return False


def format_objective(v: Any, percent: bool) -> str:
    """An objective's cell: 2 decimals as a percentage on a % axis, else 4 significant digits."""
    if is_missing(v):
        return ""
    v = float(v)
    return f"{100.0 * v:.2f}%" if percent else f"{v:.4g}"


def format_param(v: Any) -> str:
    """Floats to 4 significant digits (sweeps sample them on log scales, so more digits are noise)."""
    if is_missing(v):
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


def summary_line(trials: pd.DataFrame, n_front: int) -> str:
    c = _status_counts(trials)
    line = f"{c['complete']} complete trials, {n_front} on the front; {c['pruned']} pruned, {c['failed']} failed"
    return line + (f", {c['interrupted']} interrupted" if c["interrupted"] else "")


def front_table(trials: pd.DataFrame, objs: Sequence[FrontAxis]) -> tuple[list[str], list[list[str]], pd.DataFrame]:
    """Header and formatted cells of the front table, shared by the markdown and HTML renderings."""
    f = front(trials, objs)
    percent = percent_flags(trials, objs)
    params = param_columns(trials)
    header = ["trial", *(label for _, _, label in objs), *(p.removeprefix(PARAM_PREFIX) for p in params)]
    rows = []
    for rec in f.to_dict("records"):
        row = [format_param(rec["trial"])]
        row += [format_objective(rec[k], pc) for (k, _, _), pc in zip(objs, percent, strict=True)]
        row += [format_param(rec[p]) for p in params]
        rows.append(row)
    return header, rows, f


def _md_cell(s: str) -> str:
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def front_markdown(trials: pd.DataFrame, objectives: Sequence[FrontAxis], title: str | None = None) -> str:
    """The front as a markdown table plus one line of trial counts by status.

    The count line matters as much as the table: a front of 3 out of 5 complete trials (with 40 pruned)
    says something very different from 3 out of 200.
    """
    objs = check_axes(trials, objectives)
    header, rows, _ = front_table(trials, objs)
    out = []
    if title:
        out += [f"## {title}", ""]
    if rows:
        out.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
        out.append("|" + "|".join(" ---: " if i < 1 + len(objs) else " --- " for i in range(len(header))) + "|")
        out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    else:
        out.append("_no complete trials with all objective values_")
    out += ["", summary_line(trials, len(rows))]
    return "\n".join(out) + "\n"


def trials_text(trials: pd.DataFrame, objectives: Sequence[FrontAxis]) -> str:
    """Every trial, by number, with its status, Pareto rank (0: not ranked) and values, as aligned
    text (`robustmm pareto --all`). Its cells are the front's: the same labels, objectives in % where
    the front shows %, parameters to 4 significant digits."""
    objs = check_axes(trials, objectives)
    ranked = rank_trials(trials, objs).sort_values("trial", kind="mergesort")
    percent = percent_flags(trials, objs)
    params = param_columns(trials)
    table = pd.DataFrame(
        {
            "trial": [format_param(v) for v in ranked["trial"]],
            "status": [str(v) for v in ranked["status"]],
            "pareto_rank": [str(int(v)) for v in ranked["pareto_rank"]],
            **{
                label: [format_objective(v, pc) for v in ranked[k]]
                for (k, _, label), pc in zip(objs, percent, strict=True)
            },
            **{p.removeprefix(PARAM_PREFIX): [format_param(v) for v in ranked[p]] for p in params},
        }
    )
    return table.to_string(index=False) + "\n"
