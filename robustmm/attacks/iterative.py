"""The one gradient-ascent loop behind FGSM, BIM, PGD, FGM and L2-PGD.

The five attacks differ only in the threat model (how a gradient becomes a step, how the
iterate is projected back, how a random start is drawn) and in start/steps/restarts, so they
share this loop instead of five copies of it. Each step starts from the previous iterate and is
projected on the ball around the ORIGINAL input, then clamped to each modality's value range
(the public rgmc BIM restarted from x at every step).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from robustmm.attacks.base import (
    Differentiable,
    Inputs,
    Loss,
    Param,
    Ranges,
    Rng,
    clamp_to_range,
    draw,
    input_grad,
    joint_norm,
    per_sample,
    project_l2,
    project_linf,
)


@dataclass(frozen=True)
class Threat:
    """A norm ball: the steepest-ascent step, the projection and a random start inside it."""

    norm: str
    step: Callable[[Inputs, Param], Inputs]
    project: Callable[[Mapping[str, Tensor], Mapping[str, Tensor], Param], Inputs]
    start: Callable[[Inputs, Param, Rng], Inputs]


def _linf_step(grads: Inputs, alpha: Param) -> Inputs:
    return {t: per_sample(alpha, g) * g.sign() for t, g in grads.items()}


def _l2_step(grads: Inputs, alpha: Param) -> Inputs:
    scale = alpha / joint_norm(grads).clamp_min(1e-12)
    return {t: per_sample(scale, g) * g for t, g in grads.items()}


def _linf_start(x0: Inputs, eps: Param, rng: Rng) -> Inputs:
    return {t: (2 * draw("uniform", v.shape, v, rng) - 1) * per_sample(eps, v) for t, v in x0.items()}


def _l2_start(x0: Inputs, eps: Param, rng: Rng) -> Inputs:
    """A uniformly random direction (joint over the targets) at a radius uniform in [0, eps]."""
    direction = {t: draw("normal", v.shape, v, rng) for t, v in x0.items()}
    first = next(iter(x0.values()))
    radius = draw("uniform", (len(first),), first, rng) * eps
    scale = radius / joint_norm(direction).clamp_min(1e-12)
    return {t: per_sample(scale, d) * d for t, d in direction.items()}


LINF = Threat("linf", _linf_step, project_linf, _linf_start)
L2 = Threat("l2", _l2_step, project_l2, _l2_start)


def _clamp(x: Mapping[str, Tensor], ranges: Ranges) -> Inputs:
    return {t: clamp_to_range(v, ranges[t]) for t, v in x.items()}


def run_iterative(
    chain: Differentiable,
    inputs: Inputs,
    labels: Tensor,
    targets: Sequence[str],
    ranges: Ranges,
    *,
    threat: Threat,
    eps: Param,
    alpha: Param,
    steps: int,
    restarts: int = 1,
    random_start: bool = False,
    rng: Rng = None,
    loss: Loss = None,
) -> Inputs:
    """Projected gradient ascent on the summed cross-entropy (or `loss`); returns a new inputs dict.

    With several restarts each sample keeps the first restart that fools the chain, else the
    last one: the per-sample worst case without an extra loss evaluation per restart.
    """
    x0 = {t: inputs[t].detach() for t in targets}
    best: Inputs = {}
    fooled = torch.zeros(len(labels), dtype=torch.bool, device=labels.device)
    for r in range(restarts):
        x = _clamp({t: x0[t] + d for t, d in threat.start(x0, eps, rng).items()}, ranges) if random_start else x0
        for _ in range(steps):
            grads = input_grad(chain, {**inputs, **x}, labels, targets, loss)
            moved = {t: x[t] + s for t, s in threat.step(grads, alpha).items()}
            x = _clamp(threat.project(moved, x0, eps), ranges)
        if restarts == 1:
            return {**inputs, **x}
        keep = ~fooled
        best = x if r == 0 else {t: torch.where(per_sample(keep, x[t]), x[t], best[t]) for t in targets}
        with torch.no_grad():
            fooled = fooled | (chain({**inputs, **x}).argmax(1) != labels)
        if bool(fooled.all()):
            break
    return {**inputs, **best}
