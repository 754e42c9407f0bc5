"""Certified accuracy at an L2 radius — not an attack but a guarantee (CRMT, Yang et al., ICLR
2024, Theorem 3.5 / Proposition 3.4), evaluated like a grid cell so it lands in the same rows,
tables and objectives.

A sample counts as correct at radius ε when the chain classifies it correctly AND its certified
radius r_S(x) for a perturbation of the target modalities S is at least ε: no L2 perturbation of
S smaller than ε can change the prediction (under the model's Lipschitz estimates; see
robustmm/models/crmt.py for when that is exact). Targets "all" give the joint certificate (eq. 10),
one modality the uni-modal one. Only chains that certify (the jt/ojt/crmt-* family) can run it;
any other model is refused before training.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from robustmm.attacks.base import Differentiable, Inputs, Param, Ranges, Rng, attack


@attack("certified", norm="l2", uses_grad=False, certifies=True)
def certified(
    chain: Differentiable,
    inputs: Inputs,
    labels: Tensor,
    targets: Sequence[str],
    ranges: Ranges,
    *,
    eps: Param = 0.5,
    rng: Rng = None,
) -> Inputs:
    """Certified accuracy, L2: correct and certified radius r(x) >= eps on the targets (no perturbation)."""
    return dict(inputs)
