"""Gaussian noise — the thesis' random-corruption baseline (seed 000, §5): additive N(0, σ²)
on each target modality, clamped to its value range. Not norm-bounded, gradient-free.

The noise comes from the explicit generator(s) `rng`, never the global RNG: a seeded sweep is
reproducible, and a batched grid (one generator per cell, see base.draw) draws exactly what
each cell draws when evaluated alone. σ may be a per-sample (N,) tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from robustmm.attacks.base import Differentiable, Inputs, Param, Ranges, Rng, attack, clamp_to_range, draw, per_sample


@attack("gaussian", norm="none", uses_grad=False)
def gaussian(
    chain: Differentiable,
    inputs: Inputs,
    labels: Tensor,
    targets: Sequence[str],
    ranges: Ranges,
    *,
    sigma: Param = 0.5,
    rng: Rng = None,
) -> Inputs:
    """Additive Gaussian noise N(0, sigma^2) on the targets, clamped to the value range."""
    out = dict(inputs)
    for t in targets:
        x = inputs[t].detach()
        noise = draw("normal", x.shape, x, rng)
        out[t] = clamp_to_range(x + per_sample(sigma, x) * noise, ranges[t])
    return out
