"""A frozen model + classifier over a perturbation grid -> tidy rows (one per grid cell)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from robustmm.attacks import ATTACKS, Cell, evaluate_grid
from robustmm.data.base import MultimodalDataset
from robustmm.models.base import Chain, Classifier, RepresentationModel, variant_label

Progress = Callable[[str, int, int], None]


def evaluate_pipeline(
    model: RepresentationModel,
    classifier: Classifier,
    dataset: MultimodalDataset,
    cells: list[Cell],
    *,
    seed: int,
    batch_size: int = 512,
    max_samples: int | None = None,
    batched: bool = True,
    progress: Progress | None = None,
    labels: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Rows of `robustmm.results.COLUMNS`: the grid rows plus the `labels` columns
    (model, dataset, seed, ...) that say which run they belong to.

    A model with attack variants (RGMC: its detector detached) gets every gradient attack once
    more per variant, in rows whose model is `model[variant]`."""
    chain = Chain(model, classifier).eval()
    for p in chain.parameters():
        p.requires_grad_(False)
    test = dataset.test if max_samples is None else dataset.test.subset(slice(0, max_samples))

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

    tags = {"seed": seed, **(labels or {})}
    rows = [{**tags, **row} for row in grid(cells)]
    gradient_cells = [c for c in cells if ATTACKS.get(c.attack).uses_grad]
    name = str(tags.get("model", type(model).__name__.lower()))
    for variant, context in model.attack_variants().items() if gradient_cells else ():
        with context():
            extra = grid(gradient_cells)
        rows += [{**tags, "model": variant_label(name, variant), **row} for row in extra]
    return rows
