"""MINE — Belghazi et al., "Mutual Information Neural Estimation", ICML 2018: a per-sample
Donsker–Varadhan lower bound I(A;B) ≥ E_P[T] − log E_Q[e^T], one estimator per sample, batched.

Seed 003's MinMax attack needs the mutual information between a clean sample and its attacked
copy, estimated from K pairs of features of that one sample (the first layer's K feature maps,
or K random projections of a vector input), with a fresh statistics network per sample. Here
the N networks T_θn(a, b) = wₙ·ReLU(Gₙa + Hₙb + cₙ) are stacked into tensors of leading axis
N and trained together: the loss is a sum of per-sample losses, so each network's gradient is
its own, and Adam's update is elementwise, so one Adam over the stacks is N independent Adams.
The joint pairs are (a_k, b_k); the product of the marginals is (a_k, b_π(k)) for a random
permutation π of the K pairs of the same sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from robustmm.errors import ConfigError


@dataclass(frozen=True)
class MineSettings:
    """How the statistics networks are trained: `steps` Adam steps at `lr` (the seed's 1.5e-5
    suits its thousands of steps per sample; fewer steps need a larger rate), `hidden` units."""

    steps: int = 300
    lr: float = 1e-2
    hidden: int = 32

    def __post_init__(self) -> None:
        if self.steps < 1 or self.hidden < 1 or not self.lr > 0:
            raise ConfigError(f"MINE needs steps ≥ 1, hidden ≥ 1 and lr > 0, got {self}")


def _statistics(params: dict[str, Tensor], a: Tensor, b: Tensor) -> Tensor:
    """T_θn on every pair of every sample: a (N, K, da), b (N, K, db) -> (N, K)."""
    pre = torch.einsum("nkd,ndh->nkh", a, params["g"]) + torch.einsum("nkd,ndh->nkh", b, params["h"])
    return torch.einsum("nkh,nh->nk", torch.relu(pre + params["c"][:, None, :]), params["w"])


def dv_bound(params: dict[str, Tensor], a: Tensor, b: Tensor, perm: Tensor) -> Tensor:
    """The Donsker–Varadhan bound of each sample (N,): mean T on the joint pairs minus the log
    of mean e^T on the shuffled ones (`perm` (N, K): each sample's permutation of its pairs)."""
    k = a.shape[1]
    joint = _statistics(params, a, b).mean(dim=1)
    shuffled = torch.gather(b, 1, perm[..., None].expand_as(b))
    marginal = torch.logsumexp(_statistics(params, a, shuffled), dim=1) - torch.log(torch.tensor(float(k)))
    return joint - marginal


def _permutations(n: int, k: int, generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.argsort(torch.rand(n, k, generator=generator), dim=1).to(device)


def mine_estimate(
    a: Tensor, b: Tensor, settings: MineSettings = MineSettings(), generator: torch.Generator | None = None
) -> Tensor:
    """Per-sample mutual information (nats, (N,)) between the K paired features a (N, K, da) and
    b (N, K, db), each sample with its own freshly initialised statistics network; seeded by
    `generator` (initialisation and shuffles), so the same seed gives the same estimates."""
    if a.dim() != 3 or b.dim() != 3 or a.shape[:2] != b.shape[:2]:
        shapes = f"{tuple(a.shape)} and {tuple(b.shape)}"
        raise ConfigError(f"MINE needs paired features (N, K, d) with the same N and K; got {shapes}")
    if a.shape[1] < 2:
        raise ConfigError(f"MINE needs at least 2 pairs per sample to shuffle, got K={a.shape[1]}")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    n, k, da = a.shape
    db, h = b.shape[2], settings.hidden
    a, b = a.detach().float(), b.detach().float()

    def init(*shape: int, fan_in: int) -> Tensor:
        return (torch.randn(*shape, generator=generator) / fan_in**0.5).to(a.device).requires_grad_()

    params = {
        "g": init(n, da, h, fan_in=da),
        "h": init(n, db, h, fan_in=db),
        "c": torch.zeros(n, h, device=a.device, requires_grad=True),
        "w": init(n, h, fan_in=h),
    }
    optimiser = torch.optim.Adam(params.values(), lr=settings.lr)
    with torch.enable_grad():
        for _ in range(settings.steps):
            optimiser.zero_grad(set_to_none=True)
            (-dv_bound(params, a, b, _permutations(n, k, generator, a.device)).sum()).backward()
            optimiser.step()
    with torch.no_grad():
        return dv_bound(params, a, b, _permutations(n, k, generator, a.device))
