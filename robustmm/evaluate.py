"""A frozen model + classifier over a perturbation grid -> tidy rows (one per grid cell)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from robustmm.attacks import Cell, evaluate_grid
from robustmm.data.base import MultimodalDataset
from robustmm.models.base import Chain, Classifier, RepresentationModel

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
    (model, dataset, seed, ...) that say which run they belong to."""
    chain = Chain(model, classifier).eval()
    for p in chain.parameters():
        p.requires_grad_(False)
    test = dataset.test if max_samples is None else dataset.test.subset(slice(0, max_samples))
    with torch.enable_grad():
        rows = evaluate_grid(
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
    return [{**tags, **row} for row in rows]
