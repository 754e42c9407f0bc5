"""A frozen model + classifier over a perturbation grid -> tidy rows (one per grid cell).

A certifying model (the CRMT family) evaluated on a grid with certified cells also gets its
certificate statistics as rows with a `value` instead of an accuracy: `certified_radius` (mean
r_S(x) over the evaluated samples, 0 for a misclassified one, per certified target S),
`vulnerability` (mean η^(m) per modality) and `vulnerability_ratio` (the largest over the
smallest mean η, for two modalities η^(1)/η^(2) with the more vulnerable one on top).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pandas as pd
import torch

from robustmm.attacks import ATTACKS, Cell, evaluate_grid
from robustmm.attacks.grid import ROW_PARAMS, STATISTICS, certificate_cells
from robustmm.data.base import MultimodalDataset, Split
from robustmm.errors import ConfigError
from robustmm.models.base import MODELS, Chain, RepresentationModel, variant_label
from robustmm.worst_case import worst_case_accuracy

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


def model_cells(model: str, cells: list[Cell], *, strict: bool = True) -> list[Cell]:
    """The grid cells `model` can be scored on: certified cells need a model that certifies."""
    certified = certificate_cells(cells)
    if not certified or MODELS.get(model).cls.certifies:
        return cells
    if strict:
        able = ", ".join(n for n, e in MODELS.items() if e.cls.certifies)
        raise ConfigError(
            f"model {model!r} gives no certified radius but the grid has {len(certified)} certified cells; "
            f"only {able} certify — use grid l2, or drop the certified cells"
        )
    log.info("%s gives no certified radius: its %d certified cells are skipped", model, len(certified))
    return [c for c in cells if c not in certified]


def evaluate_pipeline(
    model: RepresentationModel,
    classifier: torch.nn.Module,
    dataset: MultimodalDataset,
    cells: list[Cell],
    *,
    seed: int,
    batch_size: int = 512,
    max_samples: int | None = None,
    batched: bool = True,
    progress: Progress | None = None,
    labels: dict[str, Any] | None = None,
    split: str = "test",
) -> list[dict[str, Any]]:
    """Rows of `robustmm.results.COLUMNS`: the grid rows plus the `labels` columns
    (model, dataset, seed, ...) that say which run they belong to, evaluated on the dataset's
    `split` ("test", or "validation" where hyperparameters are being chosen) and saying so.

    A model with attack variants (RGMC: its detector detached) gets every gradient attack once
    more per variant, in rows whose model is `model[variant]`. Every row carries which samples
    it got right (`correct_mask`) and the per-sample worst case over its norm family, smaller
    budgets and the variants (`worst_case_accuracy`, `robustmm.worst_case`)."""
    chain = Chain(model, classifier).eval()
    for p in chain.parameters():
        p.requires_grad_(False)
    test = dataset.split(split)  # the evaluated split: validation while hyperparameters are chosen
    test = test if max_samples is None else test.subset(slice(0, max_samples))

    def grid(cells: list[Cell]) -> list[dict[str, Any]]:
        with torch.enable_grad():
            return evaluate_grid(
                chain,
                test.inputs,
                test.labels,
                cells,
                dataset.value_ranges,
                seed=seed,
                batch_size=batch_size,
                batched=batched,
                progress=progress,
            )

    tags = {"seed": seed, "split": split, **(labels or {})}
    rows = [{**tags, **row} for row in grid(cells)]
    targets = list(dict.fromkeys(c.targets for c in certificate_cells(cells)))
    if targets:
        rows += [{**tags, **row} for row in certificate_rows(chain, test, targets, batch_size)]
    gradient_cells = [c for c in cells if ATTACKS.get(c.attack).uses_grad]
    name = str(tags.get("model", type(model).__name__.lower()))
    for variant, context in model.attack_variants().items() if gradient_cells else ():
        with context():
            extra = grid(gradient_cells)
        rows += [{**tags, "model": variant_label(name, variant), **row} for row in extra]
    worst = worst_case_accuracy(pd.DataFrame(rows))
    return [{**row, "worst_case_accuracy": float(w)} for row, w in zip(rows, worst, strict=True)]


def _stat_row(perturbation: str, target: str, value: float, n: int) -> dict[str, Any]:
    nan = float("nan")
    return {
        "perturbation": perturbation,
        "target": target,
        **dict.fromkeys(ROW_PARAMS, nan),
        "accuracy": nan,
        "correct": 0,
        "n": n,
        "correct_mask": "",
        "value": value,
    }


@torch.no_grad()
def certificate_rows(
    chain: Chain, test: Split, targets: list[tuple[str, ...]], batch_size: int = 512
) -> list[dict[str, Any]]:
    """Mean certified radius per target group, mean η per modality and their ratio (module doc),
    from one certifying pass per chunk."""
    n = len(test)
    radii: dict[tuple[str, ...], float] = dict.fromkeys(targets, 0.0)
    eta = torch.zeros(len(chain.model.names))
    for start in range(0, n, batch_size):
        x = {k: v[start : start + batch_size] for k, v in test.inputs.items()}
        chunk, part = chain.model.certify(x, test.labels[start : start + batch_size], targets)  # type: ignore[attr-defined]
        for t in targets:
            radii[t] += float(chunk[t].sum())
        eta += part.sum(0).cpu()
    radius, vulnerability, ratio_name = STATISTICS
    rows = [_stat_row(radius, "+".join(t), radii[t] / n, n) for t in targets]
    means = (eta / n).tolist()
    names = chain.model.names
    rows += [_stat_row(vulnerability, m, v, n) for m, v in zip(names, means, strict=True)]
    if len(means) > 1:
        ratio = max(means) / min(means) if min(means) > 0 else float("inf")
        rows.append(_stat_row(ratio_name, "+".join(names), ratio, n))
    return rows
