"""The two non-perturbations of the grid: clean inputs, and a missing modality (seed 000, §5).

A missing modality is not a change of the tensors but of what the chain sees: the entry
declares `drops_targets=True` and the evaluator calls `chain(inputs, present=...)` without the
targets (AttackEntry.present). The functions return the inputs unchanged so every grid cell
goes through the same attack interface; zero-filling the dropped tensor would instead test
the model on an out-of-range input, not on a missing one.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from robustmm.attacks.base import Differentiable, Inputs, Ranges, Rng, attack


@attack("clean", norm="none", uses_grad=False, needs_targets=False)
def clean(
    chain: Differentiable, inputs: Inputs, labels: Tensor, targets: Sequence[str], ranges: Ranges, *, rng: Rng = None
) -> Inputs:
    """No perturbation: the reference accuracy of every grid."""
    return dict(inputs)


@attack("missing", norm="none", uses_grad=False, drops_targets=True)
def missing(
    chain: Differentiable, inputs: Inputs, labels: Tensor, targets: Sequence[str], ranges: Ranges, *, rng: Rng = None
) -> Inputs:
    """Missing modality: the targets are dropped from `present`; the tensors stay unchanged."""
    return dict(inputs)
