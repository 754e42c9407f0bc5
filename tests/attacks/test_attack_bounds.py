"""Every attack stays in its threat ball and in the value range, touches only its targets, and
leaves the model and the inputs as it found them."""

from __future__ import annotations

import pytest
import torch

from robustmm.attacks import ATTACKS
from robustmm.attacks.base import joint_norm
from robustmm.attacks.fgsm import fgsm

TOL = 1e-6
CASES = {
    "fgsm": {"eps": 0.1},
    "bim": {"eps": 0.1, "alpha": 0.04, "steps": 5},
    "pgd": {"eps": 0.1, "alpha": 0.04, "steps": 5, "restarts": 2},
    "fgm": {"eps": 0.8},
    "pgd_l2": {"eps": 0.8, "alpha": 0.3, "steps": 5, "restarts": 2},
    "gaussian": {"sigma": 0.5},
}
TARGETS = [("image",), ("vector",), ("image", "vector")]


def run(toy, name, targets, n=40, **params):
    x = {k: v[:n] for k, v in toy.inputs.items()}
    return x, ATTACKS.get(name).fn(
        toy.chain, x, toy.labels[:n], targets, toy.ranges, rng=torch.Generator().manual_seed(0), **params
    )


def test_every_perturbing_attack_is_covered():
    perturbing = {n for n, e in ATTACKS.items() if e.needs_targets and not e.drops_targets and not e.certifies}
    assert perturbing == set(CASES)


def assert_in_ball(norm, x, out, targets, eps):
    eps = torch.as_tensor(eps, dtype=torch.float32).expand(len(next(iter(x.values()))))
    if norm == "linf":
        for t in targets:
            assert ((out[t] - x[t]).abs().flatten(1).amax(1) <= eps + TOL).all()
    elif norm == "l2":
        assert (joint_norm({t: out[t] - x[t] for t in targets}) <= eps + TOL).all()


@pytest.mark.parametrize("targets", TARGETS, ids="+".join)
@pytest.mark.parametrize("name", sorted(CASES))
def test_in_ball_in_range_and_only_targets(toy, name, targets):
    x, out = run(toy, name, targets, **CASES[name])
    snapshot = {k: v.clone() for k, v in x.items()}
    entry = ATTACKS.get(name)
    assert_in_ball(entry.norm, x, out, targets, CASES[name].get("eps", 0.0))
    for m, (lo, hi) in toy.ranges.items():
        assert out[m].min() >= lo and out[m].max() <= hi
        if m in targets:
            assert not torch.equal(out[m], x[m])
            assert not out[m].requires_grad
        else:
            assert torch.equal(out[m], x[m])
    for k in x:  # inputs not mutated in place
        assert torch.equal(x[k], snapshot[k])


@pytest.mark.parametrize("name", ["fgsm", "bim", "pgd", "fgm", "pgd_l2"])
def test_per_sample_eps(toy, name):
    n = 30
    eps = torch.linspace(0.02, 0.4, n) if ATTACKS.get(name).norm == "linf" else torch.linspace(0.1, 2.0, n)
    params = dict(CASES[name], eps=eps)
    x, out = run(toy, name, ("image", "vector"), n=n, **params)
    assert_in_ball(ATTACKS.get(name).norm, x, out, ("image", "vector"), eps)


def test_ball_is_reached_and_range_clamp_is_the_modality_range(toy):
    # a batch whose own min/max (0.4, 0.6) is narrower than the declared range [0, 1]
    x = {"image": 0.4 + 0.2 * torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))}
    x["vector"] = toy.inputs["vector"][:16]
    out = fgsm(toy.chain, x, toy.labels[:16], ("image",), toy.ranges, eps=0.3)["image"]
    assert out.max() > 0.6 + 0.25 and out.min() < 0.4 - 0.25
    big = fgsm(toy.chain, toy.inputs, toy.labels, ("image",), toy.ranges, eps=0.6)["image"]
    assert big.min() == 0.0 and big.max() == 1.0  # clamped to the range, not beyond


@pytest.mark.parametrize("name", sorted(ATTACKS.names()))
def test_no_parameter_gradients_and_modes_unchanged(toy, name):
    entry = ATTACKS.get(name)
    targets = () if not entry.needs_targets else ("image",)
    params = CASES.get(name, {})
    toy.model.train()
    try:
        modes = [m.training for m in toy.model.modules()]
        run(toy, name, targets, n=16, **params)
        assert [m.training for m in toy.model.modules()] == modes
    finally:
        toy.model.eval()
    modes = [m.training for m in toy.model.modules()]
    run(toy, name, targets, n=16, **params)
    assert [m.training for m in toy.model.modules()] == modes and not any(modes)
    assert all(p.grad is None for p in toy.model.parameters())


def test_existing_parameter_gradients_are_not_accumulated(toy):
    for p in toy.model.parameters():
        p.grad = torch.ones_like(p)
    try:
        run(toy, "pgd", ("image", "vector"), **CASES["pgd"])
        assert all(torch.equal(p.grad, torch.ones_like(p)) for p in toy.model.parameters())
    finally:
        for p in toy.model.parameters():
            p.grad = None


def test_attacks_work_under_no_grad(toy):
    with torch.no_grad():
        x, out = run(toy, "bim", ("image",), **CASES["bim"])
    assert not torch.equal(out["image"], x["image"])
