"""A tiny two-modality problem, trained in about a second, to attack.

"image" is 1×8×8 in [0, 1] and "vector" has 20 features in [-1, 1] (a range other than [0, 1]
so clamping to the modality's own range is tested). Per-modality encoders, mean fusion over
the present modalities, a linear classifier with dropout (so module modes matter).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

import robustmm.attacks  # noqa: F401  (registers attacks and grids)

NUM_CLASSES = 4
RANGES = {"image": (0.0, 1.0), "vector": (-1.0, 1.0)}


class ToyModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(
            {
                "image": nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 16)),
                "vector": nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 16)),
            }
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, NUM_CLASSES))

    def forward(self, inputs: dict[str, Tensor], present: tuple[str, ...] | None = None) -> Tensor:
        names = present if present is not None else tuple(self.encoders)
        z = torch.stack([self.encoders[m](inputs[m]) for m in names]).mean(0)
        return self.head(z)


@dataclass
class Toy:
    model: ToyModel
    inputs: dict[str, Tensor]
    labels: Tensor
    ranges: dict[str, tuple[float, float]]

    def chain(self, inputs: dict[str, Tensor], present: tuple[str, ...] | None = None) -> Tensor:
        return self.model(inputs, present)

    def accuracy(self, inputs: dict[str, Tensor], present: tuple[str, ...] | None = None) -> float:
        with torch.no_grad():
            return (self.chain(inputs, present).argmax(1) == self.labels).float().mean().item()


def make_data(n: int, generator: torch.Generator, templates: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=generator)
    image = templates["image"][labels] + 0.15 * torch.randn(n, 1, 8, 8, generator=generator)
    vector = templates["vector"][labels] + 0.35 * torch.randn(n, 20, generator=generator)
    return {"image": image.clamp(0, 1), "vector": vector.clamp(-1, 1)}, labels


@pytest.fixture(scope="session")
def toy() -> Toy:
    g = torch.Generator().manual_seed(0)
    templates = {
        "image": 0.3 + 0.4 * torch.rand(NUM_CLASSES, 1, 8, 8, generator=g),
        "vector": 0.3 * torch.randn(NUM_CLASSES, 20, generator=g),
    }
    train_x, train_y = make_data(512, g, templates)
    test_x, test_y = make_data(200, g, templates)
    torch.manual_seed(0)
    model = ToyModel()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(150):
        present = (None, ("image",), ("vector",))[step % 3]  # also usable with a modality missing
        loss = nn.functional.cross_entropy(model(train_x, present), train_y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    return Toy(model, test_x, test_y, dict(RANGES))
