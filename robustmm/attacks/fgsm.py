"""FGSM — Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples",
ICLR 2015. Threat model: L∞ ball of radius ε on the target modalities.

x' = clip_range(x + ε·sign(∇ₓ L(x, y))), L the summed cross-entropy of the chain's logits on the
true labels. It is BIM with one step of size ε from x, so it runs through the shared loop; the
clamp uses the modality's declared value range (the rgmc code clamped to the batch min/max).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from robustmm.attacks.base import Differentiable, Inputs, Loss, Param, Ranges, Rng, attack
from robustmm.attacks.iterative import LINF, run_iterative


@attack("fgsm", norm="linf")
def fgsm(
    chain: Differentiable,
    inputs: Inputs,
    labels: Tensor,
    targets: Sequence[str],
    ranges: Ranges,
    *,
    eps: Param = 0.1,
    rng: Rng = None,
    loss: Loss = None,
) -> Inputs:
    """FGSM (Goodfellow et al., ICLR 2015), L∞: one signed-gradient step of size eps."""
    return run_iterative(chain, inputs, labels, targets, ranges, threat=LINF, eps=eps, alpha=eps, steps=1, loss=loss)
