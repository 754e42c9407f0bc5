"""Carving a validation split out of train: seeded and stratified by class.

Hyperparameters (a sweep's objectives) are chosen on the validation split; the test split is
touched only by `robustmm run` / `robustmm report`. The carving happens before normalisation,
so the statistics that scale every split come from the remaining train samples only.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from robustmm.errors import ConfigError, DataError


def check_fraction(fraction: object) -> float:
    """`fraction` as a float strictly between 0 and 1, or a ConfigError naming it."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < float(fraction) < 1.0:
        raise ConfigError(
            f"dataset option validation_fraction must be a number strictly between 0 and 1 "
            f"(the share of train held out for validation, e.g. 0.1), got {fraction!r}"
        )
    return float(fraction)


def check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"dataset option validation_seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def stratified_holdout(labels: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """(keep_index, holdout_index): a seeded split of the sample indices that holds out about
    `fraction` of every class (rounded, at least one sample of each class that has two or more,
    never a class's last sample). Both index tensors are sorted, disjoint and cover every sample."""
    fraction = check_fraction(fraction)
    seed = check_seed(seed)
    labels = torch.as_tensor(labels).cpu()
    if labels.ndim != 1 or len(labels) == 0:
        shape = tuple(labels.shape)
        raise DataError(f"cannot carve a validation split from labels of shape {shape}; need a non-empty 1-D tensor")
    g = torch.Generator().manual_seed(seed)
    held = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        n = len(members)
        take = min(max(math.floor(fraction * n + 0.5), 1), n - 1)
        if take > 0:
            held.append(members[torch.randperm(n, generator=g)[:take]])
    if not held:
        raise DataError(
            f"train has {len(labels)} samples, none in a class with two or more, so no validation split can be "
            "carved; give a larger train split (or the dataset's own validation files)"
        )
    holdout = torch.sort(torch.cat(held)).values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[holdout] = False
    return torch.nonzero(mask).flatten(), holdout
