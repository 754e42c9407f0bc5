"""The attacks attack: accuracy falls with eps, PGD is no weaker than FGSM, BIM iterates."""

from __future__ import annotations

import pytest
import torch

from robustmm.attacks import ATTACKS
from robustmm.attacks.base import input_grad
from robustmm.attacks.bim import bim
from robustmm.attacks.fgsm import fgsm
from robustmm.attacks.pgd import pgd

EPS = (0.05, 0.1, 0.15, 0.2, 0.3)


def attacked_accuracy(toy, name, target, **params):
    out = ATTACKS.get(name).fn(
        toy.chain, toy.inputs, toy.labels, (target,), toy.ranges, rng=torch.Generator().manual_seed(0), **params
    )
    return toy.accuracy(out)


@pytest.mark.parametrize("target", ["image", "vector"])
@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("fgsm", lambda e: {}),
        ("bim", lambda e: {"alpha": e / 5, "steps": 10}),
        ("pgd", lambda e: {"alpha": e / 4, "steps": 10}),
    ],
    ids=["fgsm", "bim", "pgd"],
)
def test_accuracy_non_increasing_in_eps(toy, name, extra, target):
    accs = [attacked_accuracy(toy, name, target, eps=e, **extra(e)) for e in EPS]
    assert all(b <= a for a, b in zip(accs, accs[1:], strict=False)), accs
    assert accs[-1] < toy.accuracy(toy.inputs)


@pytest.mark.parametrize("target", ["image", "vector"])
@pytest.mark.parametrize("eps", [0.1, 0.2, 0.3])
def test_pgd_no_weaker_than_fgsm(toy, target, eps):
    strong = attacked_accuracy(toy, "pgd", target, eps=eps, alpha=eps / 4, steps=10, restarts=3)
    assert strong <= attacked_accuracy(toy, "fgsm", target, eps=eps)


def test_restarts_keep_the_per_sample_worst_case(toy):
    args = (toy.chain, toy.inputs, toy.labels, ("image",), toy.ranges)
    params = {"eps": 0.3, "alpha": 0.01, "steps": 3}
    one = pgd(*args, rng=torch.Generator().manual_seed(0), restarts=1, **params)
    many = pgd(*args, rng=torch.Generator().manual_seed(0), restarts=4, **params)
    with torch.no_grad():
        fooled_one = toy.chain(one).argmax(1) != toy.labels
        fooled_many = toy.chain(many).argmax(1) != toy.labels
    # the first restart is the same draw; later restarts only replace samples not yet fooled
    assert fooled_one.any() and (fooled_many | ~fooled_one).all()
    assert fooled_many.sum() > fooled_one.sum()
    assert torch.equal(many["image"][fooled_one], one["image"][fooled_one])


def reference_bim(toy, x, y, eps, alpha, steps, restart_at_x):
    """A direct transcription of SPEC §1 (or of the rgmc bug when restart_at_x)."""
    x0, cur = x["image"], x["image"]
    for _ in range(steps):
        g = input_grad(toy.chain, {"image": cur, "vector": x["vector"]}, y, ("image",))["image"]
        base = x0 if restart_at_x else cur
        cur = torch.min(torch.max(base + alpha * g.sign(), x0 - eps), x0 + eps).clamp(0, 1)
    return cur


def test_bim_is_iterative(toy):
    x, y = toy.inputs, toy.labels
    eps, alpha, steps = 0.1, 0.02, 10  # alpha * steps > eps
    out = bim(toy.chain, x, y, ("image",), toy.ranges, eps=eps, alpha=alpha, steps=steps)["image"]
    reach = (out - x["image"]).abs().flatten(1).amax(1)
    assert (reach > alpha + 1e-4).float().mean() > 0.9  # moved beyond one step...
    assert torch.allclose(reach.max(), torch.tensor(eps), atol=1e-6)  # ...up to the ball's surface
    assert torch.allclose(out, reference_bim(toy, x, y, eps, alpha, steps, restart_at_x=False), atol=1e-6)
    buggy = reference_bim(toy, x, y, eps, alpha, steps, restart_at_x=True)
    assert (buggy - x["image"]).abs().max() <= alpha + 1e-6
    assert not torch.allclose(out, buggy)
    one_step = fgsm(toy.chain, x, y, ("image",), toy.ranges, eps=alpha)["image"]
    assert not torch.allclose(out, one_step)
