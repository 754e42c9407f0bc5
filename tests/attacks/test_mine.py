"""MINE's per-sample Donsker–Varadhan estimate on Gaussians whose mutual information is known,
one independent estimator per sample in one batch, and seeded."""

from __future__ import annotations

import math

import pytest
import torch

from robustmm.attacks.mine import MineSettings, mine_estimate
from robustmm.errors import ConfigError

SETTINGS = MineSettings(steps=300, lr=1e-2, hidden=32)
MEAN_TOLERANCE = 0.1  # nats: the mean over the samples' estimates
SAMPLE_TOLERANCE = 0.4  # nats: any one sample's estimate from its 512 pairs (measured spread ±0.27)


def gaussian_pairs(n: int, k: int, d: int, rho: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n samples of k pairs (a, b): d independent coordinates, each pair correlated by rho, so
    I(A;B) = −d/2 · log(1 − rho²)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, k, d, generator=g)
    b = rho * a + math.sqrt(1 - rho**2) * torch.randn(n, k, d, generator=g)
    return a, b


@pytest.mark.parametrize(("rho", "d"), [(0.0, 1), (0.8, 1), (0.9, 2)])
def test_the_estimate_matches_the_known_mutual_information(rho, d):
    truth = -d / 2 * math.log(1 - rho**2)
    a, b = gaussian_pairs(8, 512, d, rho, seed=1)
    estimate = mine_estimate(a, b, SETTINGS, torch.Generator().manual_seed(0))
    assert estimate.shape == (8,)
    assert abs(estimate.mean().item() - truth) < MEAN_TOLERANCE, (estimate, truth)
    assert (estimate - truth).abs().max().item() < SAMPLE_TOLERANCE, (estimate, truth)


def test_each_sample_has_its_own_estimator():
    """Changing one sample's pairs changes its estimate only: no parameter or step is shared."""
    a, b = gaussian_pairs(4, 256, 1, 0.8, seed=2)
    settings = MineSettings(steps=100)
    before = mine_estimate(a, b, settings, torch.Generator().manual_seed(0))
    b2 = b.clone()
    b2[0] = torch.randn(256, 1, generator=torch.Generator().manual_seed(9))  # sample 0 now independent
    after = mine_estimate(a, b2, settings, torch.Generator().manual_seed(0))
    assert after[0] < before[0] - 0.2
    torch.testing.assert_close(after[1:], before[1:])


def test_the_same_seed_gives_the_same_estimates():
    a, b = gaussian_pairs(3, 128, 1, 0.5, seed=3)
    settings = MineSettings(steps=50)
    first = mine_estimate(a, b, settings, torch.Generator().manual_seed(4))
    assert torch.equal(first, mine_estimate(a, b, settings, torch.Generator().manual_seed(4)))


@pytest.mark.parametrize(
    ("a", "b", "words"),
    [
        (torch.zeros(2, 8), torch.zeros(2, 8), "paired features"),
        (torch.zeros(2, 8, 1), torch.zeros(2, 7, 1), "paired features"),
        (torch.zeros(2, 1, 1), torch.zeros(2, 1, 1), "at least 2 pairs"),
    ],
)
def test_features_of_the_wrong_shape_are_refused(a, b, words):
    with pytest.raises(ConfigError, match=words):
        mine_estimate(a, b, MineSettings(steps=1))


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="MINE needs"):
        MineSettings(steps=0)
