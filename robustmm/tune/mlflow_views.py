"""What MLflow's UI shows of a sweep besides numbers: the descriptions of its experiment, parent
run and trial runs (MLflow's notes), and every trial's settings as params.

Plain text and dicts only: `robustmm.tracking` logs them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from robustmm.tracking import FRONT_SEARCH, flatten
from robustmm.tune.space import SWEEP_SPLIT, SweepSpec

ROWS_TABLE = "cells.json"  # a trial's grid cells: one row per (seed, attack, modality, budget)
FRONT_TABLE = "pareto/front_table.json"
# the cells' columns as the UI shows them, what was attacked and how well it held first; the
# model, dataset and split are the run's params, the per-sample masks are in rows.parquet
CELL_COLUMNS = (
    "seed",
    "perturbation",
    "target",
    "eps",
    "accuracy",
    "worst_case_accuracy",
    "correct",
    "n",
    "value",
    "alpha",
    "sigma",
    "steps",
    "restarts",
)


def trial_settings(spec: SweepSpec, values: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's params in MLflow: its whole run config (model, dataset, training, grid, seeds, with
    the sampled `values` set) and the split it is scored on, so the run table can show and filter
    any of them. Unset options (None) are left out."""
    settings = flatten(spec.run_config(values).to_dict())
    settings.update({"eval.split": SWEEP_SPLIT, "split": SWEEP_SPLIT})
    settings.update(values)
    return {k: v for k, v in settings.items() if v is not None}


def cell_table(rows: Any) -> Any:
    """A trial's grid rows as the table its run shows: `CELL_COLUMNS` that the rows have, in order."""
    return rows[[c for c in CELL_COLUMNS if c in rows.columns]]


def sweep_summary(spec: SweepSpec) -> str:
    settings = trial_settings(spec, {})
    objectives = ", ".join(f"`{o.key}` ({o.mode})" for o in spec.objectives)
    return (
        f"Sweep `{spec.name}`: up to {spec.num_samples} trials of {settings.get('model.name', '?')} on "
        f"{settings.get('dataset.name', '?')}, {spec.sampler} sampler; objectives {objectives}, scored on the "
        f"{SWEEP_SPLIT} split. Searched: {', '.join(f'`{p.key}`' for p in spec.params)}."
    )


def experiment_note(spec: SweepSpec) -> str:
    """The experiment's description: the space's own, what the sweep is, how to find its front."""
    lines = [spec.description] if spec.description else []
    lines += [
        sweep_summary(spec),
        f"The sweep's parent run `{spec.name}` holds the Pareto front (artifacts under `pareto/`); "
        "its nested runs are the trials, one per Optuna trial number.",
        f"The front's trials: search `{FRONT_SEARCH}`.",
    ]
    return "\n\n".join(lines)


def parent_note(spec: SweepSpec, front_markdown: str = "") -> str:
    """The parent run's description; once the sweep has ended, with its front table."""
    note = experiment_note(spec)
    return f"{note}\n\n{front_markdown.strip()}" if front_markdown.strip() else note


def trial_note(
    spec: SweepSpec,
    number: int | None,
    values: Mapping[str, Any],
    outcome: Mapping[str, Any] | None = None,
) -> str:
    """A trial run's description: what it is, its sampled values and, once it ended, how
    (`outcome`: status, failure_reason, the objectives, pareto_rank)."""
    settings = trial_settings(spec, values)
    name = f"Trial {number}" if number is not None else "A trial"
    lines = [
        f"{name} of the sweep `{spec.name}`: {settings.get('model.name', '?')} on "
        f"{settings.get('dataset.name', '?')}, scored on the {SWEEP_SPLIT} split.",
        "Sampled: " + (", ".join(f"`{k}` = {_value(v)}" for k, v in values.items()) or "nothing"),
    ]
    if outcome:
        lines.append(_outcome_line(spec.objectives, outcome))
    return "\n\n".join(lines)


def _outcome_line(objectives: Sequence[Any], outcome: Mapping[str, Any]) -> str:
    status = str(outcome.get("status", ""))
    parts = [f"Ended: {status}"]
    if outcome.get("failure_reason"):
        parts[0] += f" ({outcome['failure_reason']})"
    parts += [f"`{o.key}` = {_value(outcome[o.key])}" for o in objectives if _known(outcome.get(o.key))]
    rank = outcome.get("pareto_rank")
    if status == "complete" and _known(rank):
        parts.append("on the Pareto front" if int(rank) == 1 else f"Pareto rank {int(rank)}")
    return "; ".join(parts) + "."


def _known(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
