"""FGM — the L2 fast gradient method (Goodfellow et al., ICLR 2015; the L2 form used by
Miyato et al. 2017 and by CRMT, Yang et al., ICML 2024). Threat model: L2 ball of radius ε.

x' = clip_range(x + ε·g/‖g‖₂), g = ∇L on the target modalities. With several targets the norm
is over the CONCATENATION of their gradients (a joint multimodal L2 attack, as in CRMT), so the
whole perturbation has norm ε rather than ε per modality.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from robustmm.attacks.base import Differentiable, Inputs, Loss, Param, Ranges, Rng, attack
from robustmm.attacks.iterative import L2, run_iterative


@attack("fgm", norm="l2")
def fgm(
    chain: Differentiable,
    inputs: Inputs,
    labels: Tensor,
    targets: Sequence[str],
    ranges: Ranges,
    *,
    eps: Param = 0.5,
    rng: Rng = None,
    loss: Loss = None,
) -> Inputs:
    """FGM (L2 fast gradient), L2: one step of length eps along the joint gradient direction."""
    return run_iterative(chain, inputs, labels, targets, ranges, threat=L2, eps=eps, alpha=eps, steps=1, loss=loss)
