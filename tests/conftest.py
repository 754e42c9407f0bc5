from __future__ import annotations

import pytest
import torch

from robustmm.data.base import ModalitySpec, MultimodalDataset, Split

IMAGE = ModalitySpec("image", "image", (1, 28, 28))
TRAJ = ModalitySpec("trajectory", "vector", (200,))


def toy_dataset(n_train: int = 256, n_test: int = 128, seed: int = 0, n_validation: int = 64) -> MultimodalDataset:
    """A small learnable two-modality problem: class-dependent blobs in both modalities."""
    g = torch.Generator().manual_seed(seed)
    protos_img = torch.rand(10, 1, 28, 28, generator=g)
    protos_traj = torch.rand(10, 200, generator=g)

    def split(n: int) -> Split:
        y = torch.arange(n) % 10
        img = (protos_img[y] + 0.25 * torch.randn(n, 1, 28, 28, generator=g)).clamp(0, 1)
        traj = (protos_traj[y] + 0.25 * torch.randn(n, 200, generator=g)).clamp(0, 1)
        return Split({"image": img, "trajectory": traj}, y)

    train, test = split(n_train), split(n_test)
    return MultimodalDataset("toy", (IMAGE, TRAJ), 10, train, test, validation=split(n_validation))


@pytest.fixture
def toy() -> MultimodalDataset:
    return toy_dataset()
