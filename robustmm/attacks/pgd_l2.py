"""L2-PGD — Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks",
ICLR 2018, in its L2 form (the attack CRMT, Yang et al., ICML 2024, evaluates and trains
against). Threat model: L2 ball of radius ε over the concatenation of the target modalities.

Random start inside the ball (a uniformly random joint direction at a radius uniform in
[0, ε], as torchattacks' PGDL2), then K steps x ← Π_ε(x + α·g/‖g‖₂) with the TRUE L2 projection
(radial shrink), clamped to the value range, keeping the worst of `restarts`. The CRMT code
trained against an "L2" attack clamped coordinate-wise like L∞; this one is a real L2 ball.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from robustmm.attacks.base import Differentiable, Inputs, Loss, Param, Ranges, Rng, attack
from robustmm.attacks.iterative import L2, run_iterative


@attack("pgd_l2", norm="l2")
def pgd_l2(
    chain: Differentiable,
    inputs: Inputs,
    labels: Tensor,
    targets: Sequence[str],
    ranges: Ranges,
    *,
    eps: Param = 0.5,
    alpha: Param = 0.1,
    steps: int = 10,
    restarts: int = 1,
    random_start: bool = True,
    rng: Rng = None,
    loss: Loss = None,
) -> Inputs:
    """L2-PGD (Madry et al., ICLR 2018), L2: random start in the joint eps-ball, K normalised steps."""
    return run_iterative(
        chain,
        inputs,
        labels,
        targets,
        ranges,
        threat=L2,
        eps=eps,
        alpha=alpha,
        steps=steps,
        restarts=restarts,
        random_start=random_start,
        rng=rng,
        loss=loss,
    )
