"""What every dataset hands to the rest of the package: modality specs and in-memory splits.

A dataset declares its modalities (name, kind, shape, value range); models pick their
per-modality networks from the kind and shape, attacks clamp to the value range. Splits hold
whole tensors so training and evaluation never loop over Python samples.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from robustmm.errors import ConfigError, DataError
from robustmm.registry import Registry

MODALITY_KINDS = ("image", "rgb", "vector", "sound")


@dataclass(frozen=True)
class ModalitySpec:
    """One modality: `kind` selects the encoder/decoder family, `shape` excludes the batch axis."""

    name: str
    kind: str
    shape: tuple[int, ...]
    value_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if self.kind not in MODALITY_KINDS:
            raise ConfigError(
                f"modality {self.name!r} has unknown kind {self.kind!r}; known: {', '.join(MODALITY_KINDS)}"
            )
        lo, hi = self.value_range
        if not lo < hi:
            raise ConfigError(f"modality {self.name!r} has an empty value range {self.value_range}")


@dataclass
class Split:
    """A whole split in memory: modality name -> N×shape float tensor, labels N int64."""

    inputs: dict[str, Tensor]
    labels: Tensor

    def __post_init__(self) -> None:
        n = len(self.labels)
        for name, x in self.inputs.items():
            if len(x) != n:
                raise DataError(f"modality {name!r} has {len(x)} samples but there are {n} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> Split:
        return Split({k: v.to(device) for k, v in self.inputs.items()}, self.labels.to(device))

    def subset(self, index: Tensor | slice) -> Split:
        return Split({k: v[index] for k, v in self.inputs.items()}, self.labels[index])


@dataclass
class MultimodalDataset:
    name: str
    modalities: tuple[ModalitySpec, ...]
    num_classes: int
    train: Split
    test: Split
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.modalities) < 1:
            raise DataError(f"dataset {self.name!r} declares no modality")
        for split in (self.train, self.test):
            for spec in self.modalities:
                if spec.name not in split.inputs:
                    raise DataError(f"dataset {self.name!r} lacks modality {spec.name!r} in a split")
                got = tuple(split.inputs[spec.name].shape[1:])
                if got != spec.shape:
                    raise DataError(
                        f"dataset {self.name!r}: modality {spec.name!r} has shape {got}, declared {spec.shape}"
                    )

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.modalities)

    def spec(self, name: str) -> ModalitySpec:
        for s in self.modalities:
            if s.name == name:
                return s
        raise ConfigError(f"dataset {self.name!r} has no modality {name!r}; it has {', '.join(self.modality_names)}")

    @property
    def value_ranges(self) -> dict[str, tuple[float, float]]:
        return {s.name: s.value_range for s in self.modalities}

    def to(self, device: torch.device | str) -> MultimodalDataset:
        return replace(self, train=self.train.to(device), test=self.test.to(device))

    def select(self, names: tuple[str, ...] | list[str]) -> MultimodalDataset:
        """Keep only the named modalities, in the given order."""
        specs = tuple(self.spec(n) for n in names)
        keep = lambda s: Split({n: s.inputs[n] for n in names}, s.labels)  # noqa: E731
        return replace(self, modalities=specs, train=keep(self.train), test=keep(self.test))


def minmax_normalise(
    train: Mapping[str, Tensor], test: Mapping[str, Tensor]
) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, tuple[float, float]]]:
    """Scale every modality to [0, 1] with the TRAIN split's min and max.

    Test values outside the train range are clamped so the declared value range holds for
    every split (attacks clamp to it). Returns the scaled splits and the statistics used.
    """
    out_train, out_test, stats = {}, {}, {}
    for name, x in train.items():
        lo, hi = float(x.min()), float(x.max())
        scale = hi - lo if hi > lo else 1.0
        out_train[name] = ((x - lo) / scale).float()
        out_test[name] = ((test[name] - lo) / scale).clamp(0.0, 1.0).float()
        stats[name] = (lo, hi)
    return out_train, out_test, stats


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: its loader, the options it accepts (with defaults), one-line summary.

    `load(data_dir=..., **options)` returns a MultimodalDataset normalised with train stats.
    Datasets that need randomness take their own `data_seed` option (default 0), so the data
    stay the same across the run seeds that vary model initialisation.
    """

    load: Callable[..., MultimodalDataset]
    defaults: Mapping[str, Any]
    summary: str
    needs_data_dir: bool


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(
    name: str, *, defaults: Mapping[str, Any], summary: str, needs_data_dir: bool
) -> Callable[[Callable[..., MultimodalDataset]], Callable[..., MultimodalDataset]]:
    def deco(fn: Callable[..., MultimodalDataset]) -> Callable[..., MultimodalDataset]:
        DATASETS.add(name, DatasetEntry(fn, dict(defaults), summary, needs_data_dir))
        return fn

    return deco


def check_options(kind: str, name: str, options: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Merge user options over defaults; an unknown key is a ConfigError naming the known ones."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        known = ", ".join(sorted(defaults)) or "none"
        raise ConfigError(f"{kind} {name!r} has no option {unknown[0]!r}; its options: {known}")
    merged = dict(defaults)
    merged.update(options)
    return merged


def load_dataset(
    name: str, *, data_dir: str | Path | None = None, options: Mapping[str, Any] | None = None
) -> MultimodalDataset:
    entry = DATASETS.get(name)
    opts = check_options("dataset", name, options or {}, entry.defaults)
    if entry.needs_data_dir and data_dir is None:
        raise ConfigError(f"dataset {name!r} needs --data-dir pointing at its files")
    return entry.load(data_dir=Path(data_dir) if data_dir is not None else None, **opts)


def cache_root() -> Path:
    """Where generated data sets are written when no --data-dir is given."""
    import os

    return Path(os.environ.get("ROBUSTMM_CACHE") or Path.home() / ".cache" / "robustmm")
