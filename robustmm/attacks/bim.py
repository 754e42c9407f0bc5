"""BIM / iterative FGSM — Kurakin, Goodfellow & Bengio, "Adversarial Examples in the Physical
World", ICLR 2017 workshop. Threat model: L∞ ball of radius ε on the target modalities.

x'_0 = x;  x'_{k+1} = clip_range(clip_{x,ε}(x'_k + α·sign(∇L(x'_k)))),  k < K.
Each step starts from the previous iterate and is projected on the ε-ball around the ORIGINAL
x. The public rgmc code restarted from x at every step, so its "BIM" never left the α-ball;
with α·K > ε this implementation reaches the ε-ball's surface (a test pins it).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from robustmm.attacks.base import Differentiable, Inputs, Loss, Param, Ranges, Rng, attack
from robustmm.attacks.iterative import LINF, run_iterative


@attack("bim", norm="linf")
def bim(
    chain: Differentiable,
    inputs: Inputs,
    labels: Tensor,
    targets: Sequence[str],
    ranges: Ranges,
    *,
    eps: Param = 0.1,
    alpha: Param = 0.02,
    steps: int = 10,
    rng: Rng = None,
    loss: Loss = None,
) -> Inputs:
    """BIM (Kurakin et al., 2017), L∞: K signed steps of size alpha from x, projected on the eps-ball."""
    return run_iterative(
        chain, inputs, labels, targets, ranges, threat=LINF, eps=eps, alpha=alpha, steps=steps, loss=loss
    )
