"""Per-modality networks, chosen by the modality's kind and shape (seed 000 §4 / SPEC §2).

Every encoder is a *trunk* (kind-specific feature extractor) followed by a linear map to the
requested width; joint encoders reuse the trunks of every modality and fuse their features.
Decoders mirror the trunks and squash their output into the modality's value range.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from robustmm.data.base import ModalitySpec
from robustmm.errors import ConfigError

ACTIVATIONS = {"silu": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU}


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ConfigError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}") from None


def _image_dims(spec: ModalitySpec, divisor: int) -> tuple[int, int, int]:
    if len(spec.shape) != 3 or spec.shape[1] % divisor or spec.shape[2] % divisor:
        raise ConfigError(
            f"modality {spec.name!r} of kind {spec.kind!r} needs shape C×H×W with H, W divisible by "
            f"{divisor}; got {spec.shape}"
        )
    return spec.shape  # type: ignore[return-value]


class Trunk(nn.Module):
    """A kind-specific feature extractor with a known flat output width `out_features`.

    Inputs are first mapped from the modality's value range to [-1, 1]: centred inputs keep
    the contrastive latents from starting (and staying) collapsed onto one point.
    """

    def __init__(self, layers: nn.Module, out_features: int, value_range: tuple[float, float]) -> None:
        super().__init__()
        self.layers = layers
        self.out_features = out_features
        lo, hi = value_range
        self.centre, self.half_width = (lo + hi) / 2, (hi - lo) / 2

    def forward(self, x: Tensor) -> Tensor:
        return self.layers((x - self.centre) / self.half_width).flatten(1)


def make_trunk(spec: ModalitySpec, act: str = "silu") -> Trunk:
    if spec.kind == "image":
        c, h, w = _image_dims(spec, 4)
        layers = nn.Sequential(nn.Conv2d(c, 64, 4, 2, 1), activation(act), nn.Conv2d(64, 128, 4, 2, 1), activation(act))
        return Trunk(layers, 128 * (h // 4) * (w // 4), spec.value_range)
    if spec.kind == "rgb":
        c, h, w = _image_dims(spec, 8)
        layers = nn.Sequential(
            nn.Conv2d(c, 32, 4, 2, 1), activation(act),
            nn.Conv2d(32, 64, 4, 2, 1), activation(act),
            nn.Conv2d(64, 128, 4, 2, 1), activation(act),
        )  # fmt: skip
        return Trunk(layers, 128 * (h // 8) * (w // 8), spec.value_range)
    if spec.kind == "vector":
        d = math.prod(spec.shape)
        layers = nn.Sequential(nn.Flatten(), nn.Linear(d, 512), activation(act), nn.Linear(512, 512), activation(act))
        return Trunk(layers, 512, spec.value_range)
    if spec.kind == "sound":
        c, h, w = _image_dims(spec, 4)
        layers = nn.Sequential(
            nn.Conv2d(c, 128, (1, w)), nn.BatchNorm2d(128), nn.ReLU(),
            nn.Conv2d(128, 128, (4, 1), (2, 1), (1, 0)), nn.BatchNorm2d(128), nn.ReLU(),
            nn.Conv2d(128, 256, (4, 1), (2, 1), (1, 0)), nn.BatchNorm2d(256), nn.ReLU(),
        )  # fmt: skip
        return Trunk(layers, 256 * (h // 4), spec.value_range)
    raise ConfigError(f"no encoder for modality kind {spec.kind!r}")


class Encoder(nn.Module):
    """f_m: one modality -> `out_dim` features."""

    def __init__(self, spec: ModalitySpec, out_dim: int, act: str = "silu") -> None:
        super().__init__()
        self.trunk = make_trunk(spec, act)
        self.proj = nn.Linear(self.trunk.out_features, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.trunk(x))


class JointEncoder(nn.Module):
    """f_{1:M}: every modality through its own trunk, features concatenated, one linear map."""

    def __init__(self, specs: tuple[ModalitySpec, ...], out_dim: int, act: str = "silu") -> None:
        super().__init__()
        self.names = [s.name for s in specs]
        self.trunks = nn.ModuleDict({s.name: make_trunk(s, act) for s in specs})
        self.proj = nn.Linear(sum(t.out_features for t in self.trunks.values()), out_dim)

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        return self.proj(torch.cat([self.trunks[n](inputs[n]) for n in self.names], dim=1))


class RangeOutput(nn.Module):
    """Squashes decoder logits into the modality's value range."""

    def __init__(self, value_range: tuple[float, float]) -> None:
        super().__init__()
        self.lo, self.hi = value_range

    def forward(self, x: Tensor) -> Tensor:
        return self.lo + (self.hi - self.lo) * torch.sigmoid(x)


class Decoder(nn.Module):
    """f̄_m: `in_dim` features -> one modality, mirroring the trunk of `make_trunk`."""

    def __init__(self, spec: ModalitySpec, in_dim: int, act: str = "silu") -> None:
        super().__init__()
        self.shape = spec.shape
        self.net = self._build(spec, in_dim, act)
        self.out = RangeOutput(spec.value_range)

    @staticmethod
    def _build(spec: ModalitySpec, in_dim: int, act: str) -> nn.Module:
        if spec.kind == "image":
            c, h, w = _image_dims(spec, 4)
            return nn.Sequential(
                nn.Linear(in_dim, 128 * (h // 4) * (w // 4)), activation(act),
                nn.Unflatten(1, (128, h // 4, w // 4)),
                nn.ConvTranspose2d(128, 64, 4, 2, 1), activation(act),
                nn.ConvTranspose2d(64, c, 4, 2, 1),
            )  # fmt: skip
        if spec.kind == "rgb":
            c, h, w = _image_dims(spec, 8)
            return nn.Sequential(
                nn.Linear(in_dim, 128 * (h // 8) * (w // 8)), activation(act),
                nn.Unflatten(1, (128, h // 8, w // 8)),
                nn.ConvTranspose2d(128, 64, 4, 2, 1), activation(act),
                nn.ConvTranspose2d(64, 32, 4, 2, 1), activation(act),
                nn.ConvTranspose2d(32, c, 4, 2, 1),
            )  # fmt: skip
        if spec.kind == "vector":
            d = math.prod(spec.shape)
            return nn.Sequential(
                nn.Linear(in_dim, 512), activation(act), nn.Linear(512, 512), activation(act),
                nn.Linear(512, d), nn.Unflatten(1, spec.shape),
            )  # fmt: skip
        if spec.kind == "sound":
            c, h, w = _image_dims(spec, 4)
            return nn.Sequential(
                nn.Linear(in_dim, 256 * (h // 4)), nn.Unflatten(1, (256, h // 4, 1)),
                nn.ConvTranspose2d(256, 128, (4, 1), (2, 1), (1, 0)), nn.BatchNorm2d(128), nn.ReLU(),
                nn.ConvTranspose2d(128, 128, (4, 1), (2, 1), (1, 0)), nn.BatchNorm2d(128), nn.ReLU(),
                nn.ConvTranspose2d(128, c, (1, w)),
            )  # fmt: skip
        raise ConfigError(f"no decoder for modality kind {spec.kind!r}")

    def forward(self, h: Tensor) -> Tensor:
        return self.out(self.net(h))


def mlp(in_dim: int, hidden: tuple[int, ...] | list[int], out_dim: int, act: str = "silu") -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), activation(act)]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)
