"""PGD — Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018. Threat model: L∞ ball of radius ε on the target modalities.

BIM started at a uniformly random point of the ε-ball (clamped to the value range), with
`restarts` independent starts; each sample keeps the first restart that fools the chain, else
the last. The start is drawn from the explicit generator(s) `rng`, never the global RNG, so a
seeded run is reproducible and a batched grid draws exactly what each cell draws alone.
`random_start=False` starts at x (then it equals BIM; used to compare with torchattacks).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from robustmm.attacks.base import Differentiable, Inputs, Loss, Param, Ranges, Rng, attack
from robustmm.attacks.iterative import LINF, run_iterative


@attack("pgd", norm="linf")
def pgd(
    chain: Differentiable,
    inputs: Inputs,
    labels: Tensor,
    targets: Sequence[str],
    ranges: Ranges,
    *,
    eps: Param = 0.1,
    alpha: Param = 0.01,
    steps: int = 10,
    restarts: int = 1,
    random_start: bool = True,
    rng: Rng = None,
    loss: Loss = None,
) -> Inputs:
    """PGD (Madry et al., ICLR 2018), L∞: random start in the eps-ball, K steps, worst of restarts."""
    return run_iterative(
        chain,
        inputs,
        labels,
        targets,
        ranges,
        threat=LINF,
        eps=eps,
        alpha=alpha,
        steps=steps,
        restarts=restarts,
        random_start=random_start,
        rng=rng,
        loss=loss,
    )
