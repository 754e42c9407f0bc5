"""One hand-made result row (robustmm.results.COLUMNS) for the tests of results, objectives,
worst-case accuracy and reports."""

from __future__ import annotations

import math
from typing import Any

NAN = math.nan


def result_row(
    model: str,
    seed: int,
    perturbation: str,
    target: str,
    accuracy: float,
    *,
    eps: float = NAN,
    alpha: float = NAN,
    sigma: float = NAN,
    steps: float = NAN,
    restarts: float = NAN,
    n: int = 100,
    **extra: Any,
) -> dict[str, Any]:
    """A synth-mhd row of `n` samples, `round(accuracy * n)` of them correct, plus `extra` columns."""
    return dict(
        model=model,
        dataset="synth-mhd",
        seed=seed,
        perturbation=perturbation,
        target=target,
        eps=eps,
        alpha=alpha,
        sigma=sigma,
        steps=steps,
        restarts=restarts,
        accuracy=accuracy,
        correct=round(accuracy * n),
        n=n,
        **extra,
    )
