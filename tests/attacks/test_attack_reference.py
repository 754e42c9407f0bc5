"""Agreement with an independent implementation: torchattacks (a test-only dependency).

torchattacks attacks a single-input nn.Module with inputs in [0, 1], so the wrapper perturbs
the image modality with the vector modality fixed. Its loss is the MEAN cross-entropy and ours
the sum: the same sign and direction, so the perturbed tensors agree to float tolerance.
For L2 torchattacks divides by ‖g‖ + 1e-10 with g the mean-loss gradient, which is far from
negligible on samples the toy model classifies with saturated softmax (‖g‖ ~ 1e-9), so the L2
comparison runs on the chain's logits divided by a temperature of 10 (same predictions).
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import Tensor, nn

from robustmm.attacks.bim import bim
from robustmm.attacks.fgm import fgm
from robustmm.attacks.fgsm import fgsm
from robustmm.attacks.pgd import pgd
from robustmm.attacks.pgd_l2 import pgd_l2

# the test extra installs torchattacks; under CI its absence is a failure, not a skip, so the
# cross-check cannot silently stop running
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    import torchattacks
else:
    torchattacks = pytest.importorskip("torchattacks")


class ImageOnly(nn.Module):
    def __init__(self, toy, temperature: float = 1.0) -> None:
        super().__init__()
        self.model = toy.model  # registered, so torchattacks finds the device
        self.chain = tempered(toy, temperature)
        self.vector = toy.inputs["vector"]

    def forward(self, image: Tensor) -> Tensor:
        return self.chain({"image": image, "vector": self.vector})


def tempered(toy, temperature: float):
    return lambda inputs, present=None: toy.chain(inputs, present) / temperature


def compare(toy, ours: Tensor, reference: nn.Module) -> None:
    theirs = reference(toy.inputs["image"], toy.labels)
    toy.model.eval()
    assert torch.allclose(ours, theirs, atol=1e-5)
    with torch.no_grad():
        vector = toy.inputs["vector"]
        assert torch.equal(
            toy.chain({"image": ours, "vector": vector}).argmax(1),
            toy.chain({"image": theirs, "vector": vector}).argmax(1),
        )


def args(toy, temperature: float = 1.0):
    return tempered(toy, temperature), toy.inputs, toy.labels, ("image",), toy.ranges


@pytest.mark.parametrize("eps", [0.035, 0.13])
def test_fgsm_matches_torchattacks(toy, eps):
    ours = fgsm(*args(toy), eps=eps)["image"]
    compare(toy, ours, torchattacks.FGSM(ImageOnly(toy), eps=eps))


@pytest.mark.parametrize(("eps", "alpha"), [(0.1, 0.02), (0.2, 0.08)])
def test_bim_matches_torchattacks(toy, eps, alpha):
    ours = bim(*args(toy), eps=eps, alpha=alpha, steps=10)["image"]
    compare(toy, ours, torchattacks.BIM(ImageOnly(toy), eps=eps, alpha=alpha, steps=10))


@pytest.mark.parametrize(("eps", "alpha"), [(0.1, 0.01), (0.3, 0.1)])
def test_pgd_without_random_start_matches_torchattacks(toy, eps, alpha):
    ours = pgd(*args(toy), eps=eps, alpha=alpha, steps=10, random_start=False)["image"]
    reference = torchattacks.PGD(ImageOnly(toy), eps=eps, alpha=alpha, steps=10, random_start=False)
    compare(toy, ours, reference)


@pytest.mark.parametrize(("eps", "alpha"), [(0.5, 0.1), (1.5, 0.5)])
def test_pgd_l2_without_random_start_matches_torchattacks(toy, eps, alpha):
    ours = pgd_l2(*args(toy, 10.0), eps=eps, alpha=alpha, steps=10, random_start=False)["image"]
    reference = torchattacks.PGDL2(ImageOnly(toy, 10.0), eps=eps, alpha=alpha, steps=10, random_start=False)
    compare(toy, ours, reference)


def test_pgd_random_start_predictions_close_to_torchattacks(toy):
    """Different random draws, same attack: accuracies within a few samples."""
    ours = pgd(*args(toy), eps=0.2, alpha=0.04, steps=10, rng=torch.Generator().manual_seed(0))["image"]
    torch.manual_seed(0)
    theirs = torchattacks.PGD(ImageOnly(toy), eps=0.2, alpha=0.04, steps=10)(toy.inputs["image"], toy.labels)
    toy.model.eval()
    a = toy.accuracy({"image": ours, "vector": toy.inputs["vector"]})
    b = toy.accuracy({"image": theirs, "vector": toy.inputs["vector"]})
    assert abs(a - b) <= 0.03


@pytest.mark.parametrize("eps", [0.5, 1.5])
def test_fgm_matches_one_step_torchattacks_pgdl2(toy, eps):
    ours = fgm(*args(toy, 10.0), eps=eps)["image"]
    reference = torchattacks.PGDL2(ImageOnly(toy, 10.0), eps=eps, alpha=eps, steps=1, random_start=False)
    compare(toy, ours, reference)
