"""What every dataset hands to the rest of the package: modality specs and in-memory splits.

A dataset declares its modalities (name, kind, shape, value range); models pick their
per-modality networks from the kind and shape, attacks clamp to the value range. Splits hold
whole tensors so training and evaluation never loop over Python samples.

Every dataset has three splits: train (fits the models), validation (selects hyperparameters:
a sweep's objectives are computed on it) and test (the numbers `robustmm run` / `report`
state). A loader reads the raw train and test splits (and a validation split where the
dataset ships one) as `RawData`; `load_dataset` carves the validation split out of train
(seeded, stratified: options `validation_fraction`, `validation_seed`, which every dataset
accepts) and only then normalises, with the statistics of the remaining train samples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from robustmm.config import SPLITS
from robustmm.data.splits import check_fraction, check_seed, stratified_holdout
from robustmm.errors import ConfigError, DataError
from robustmm.options import parse
from robustmm.registry import Registry

MODALITY_KINDS = ("image", "rgb", "vector", "sound")
MAX_CLASSES = 100_000
"""The most classes a dataset may have: the classifier head is latent × classes, and a stray
label (2 000 000 000 in a label file) would otherwise size it in terabytes."""
_FINITE_CHUNK = 1 << 22  # values checked at a time: a bounded temporary, whatever the split's size


def nonfinite(x: Tensor | Any) -> int | None:
    """Index of the first sample of `x` (a tensor or numpy array, samples first) holding NaN or
    ±inf, or None. Integer data are finite by construction; floats are scanned in chunks."""
    t = torch.as_tensor(x)
    if not (t.is_floating_point() or t.is_complex()) or t.numel() == 0:
        return None
    flat = t.reshape(len(t), -1) if t.dim() > 0 else t.reshape(1, 1)
    rows = max(1, _FINITE_CHUNK // max(1, flat.shape[1]))
    for lo in range(0, len(flat), rows):
        bad = ~torch.isfinite(flat[lo : lo + rows]).all(dim=1)
        if bool(bad.any()):
            return lo + int(torch.nonzero(bad)[0])
    return None


def check_finite(x: Tensor | Any, where: str, modality: str) -> None:
    """A DataError naming `where` (the file) and the modality when `x` holds NaN or ±inf: found at
    load time, it is not blamed on the learning rate once training diverges."""
    i = nonfinite(x)
    if i is not None:
        raise DataError(
            f"{where}: modality {modality!r} holds NaN or inf values (first in sample {i}); "
            "clean or drop those samples (e.g. np.nan_to_num) and load again"
        )


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
    validation: Split = field(kw_only=True)

    def __post_init__(self) -> None:
        if len(self.modalities) < 1:
            raise DataError(f"dataset {self.name!r} declares no modality")
        for which, split in (("train", self.train), ("validation", self.validation), ("test", self.test)):
            for spec in self.modalities:
                if spec.name not in split.inputs:
                    raise DataError(f"dataset {self.name!r} lacks modality {spec.name!r} in its {which} split")
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

    def split(self, name: str) -> Split:
        """The evaluation split called `name` (one of `SPLITS`)."""
        if name not in SPLITS:
            raise ConfigError(f"unknown split {name!r}; evaluate on one of {', '.join(SPLITS)}")
        return self.test if name == "test" else self.validation

    def to(self, device: torch.device | str) -> MultimodalDataset:
        return replace(
            self, train=self.train.to(device), validation=self.validation.to(device), test=self.test.to(device)
        )

    def select(self, names: tuple[str, ...] | list[str]) -> MultimodalDataset:
        """Keep only the named modalities, in the given order."""
        specs = tuple(self.spec(n) for n in names)
        keep = lambda s: Split({n: s.inputs[n] for n in names}, s.labels)  # noqa: E731
        return replace(
            self,
            modalities=specs,
            train=keep(self.train),
            validation=keep(self.validation),
            test=keep(self.test),
        )


def minmax_normalise(
    train: Mapping[str, Tensor], *others: Mapping[str, Tensor]
) -> tuple[dict[str, Tensor], list[dict[str, Tensor]], dict[str, tuple[float, float]]]:
    """Scale every modality to [0, 1] with the TRAIN split's min and max.

    Values of the `others` (validation, test) outside the train range are clamped so the
    declared value range holds for every split (attacks clamp to it). Returns the scaled train
    split, the scaled others in order, and the statistics used.
    """
    out_train: dict[str, Tensor] = {}
    out_others: list[dict[str, Tensor]] = [{} for _ in others]
    stats = {}
    for name, x in train.items():
        lo, hi = float(x.min()), float(x.max())
        scale = hi - lo if hi > lo else 1.0
        out_train[name] = ((x - lo) / scale).float()
        for src, dst in zip(others, out_others, strict=True):
            dst[name] = ((src[name] - lo) / scale).clamp(0.0, 1.0).float()
        stats[name] = (lo, hi)
    return out_train, out_others, stats


@dataclass
class RawData:
    """What a loader reads, before the validation split is carved and anything is normalised.

    `validation` is None unless the dataset ships its own validation files. Inputs are in the
    files' units; `finish` scales them to the modalities' [0, 1] value range."""

    name: str
    modalities: tuple[ModalitySpec, ...]
    num_classes: int
    train: Split
    test: Split
    validation: Split | None = None
    info: dict[str, Any] = field(default_factory=dict)


def check_raw(raw: RawData) -> None:
    """What every loader's data must satisfy, whichever loader read them: a class count in
    [1, MAX_CLASSES], integer labels in [0, num_classes) and finite inputs in every split. Loaders
    check the same earlier, naming their files; this is the guarantee behind them."""
    if (
        isinstance(raw.num_classes, bool)
        or not isinstance(raw.num_classes, int)
        or not 1 <= raw.num_classes <= MAX_CLASSES
    ):
        raise DataError(
            f"dataset {raw.name!r} declares {raw.num_classes!r} classes; at most {MAX_CLASSES} are supported"
        )
    splits = {"train": raw.train, "test": raw.test, **({"validation": raw.validation} if raw.validation else {})}
    for which, split in splits.items():
        labels = split.labels
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise DataError(
                f"dataset {raw.name!r}: the {which} labels have dtype {labels.dtype}; they must be integers"
            )
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= raw.num_classes):
            raise DataError(
                f"dataset {raw.name!r}: the {which} labels run {int(labels.min())}..{int(labels.max())}, "
                f"outside the class indices 0..{raw.num_classes - 1}"
            )
        for spec in raw.modalities:
            if spec.name in split.inputs:
                check_finite(split.inputs[spec.name], f"dataset {raw.name!r}, {which} split", spec.name)


def finish(raw: RawData, fraction: float, seed: int) -> MultimodalDataset:
    """Carve validation out of train (unless the dataset brought its own), then min-max scale
    every split with the statistics of the train samples that remain (`minmax_normalise`)."""
    check_raw(raw)
    train, validation = raw.train, raw.validation
    if validation is None:
        keep, held = stratified_holdout(train.labels, fraction, seed)
        train, validation = train.subset(keep), train.subset(held)
        how = {"source": "carved from train", "fraction": fraction, "seed": seed}
    else:
        how = {"source": "the dataset's validation files"}
    names = [s.name for s in raw.modalities]
    pick = lambda s: {n: s.inputs[n] for n in names}  # noqa: E731
    tr, (va, te), stats = minmax_normalise(pick(train), pick(validation), pick(raw.test))
    info = {
        **raw.info,
        "normalisation": "min-max with the statistics of train (validation carved out first); "
        "validation and test clamped to [0, 1]",
        "norm_stats": stats,
        "validation": how,
        "sizes": {"train": len(train), "validation": len(validation), "test": len(raw.test)},
    }
    return MultimodalDataset(
        raw.name,
        raw.modalities,
        raw.num_classes,
        Split(tr, train.labels),
        Split(te, raw.test.labels),
        info,
        validation=Split(va, validation.labels),
    )


@dataclass(frozen=True)
class DatasetOptions:
    """Options of every dataset: the share of train held out for validation and the seed of that
    split. Each dataset extends this dataclass with its own options; datasets that need randomness
    take a `data_seed` (default 0), so the data stay the same across the run seeds that vary model
    initialisation."""

    validation_fraction: float = 0.1
    validation_seed: int = 0

    def check(self, path: str) -> None:
        check_fraction(self.validation_fraction)
        check_seed(self.validation_seed)


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: its loader, its options dataclass, one-line summary.

    `load(data_dir=..., options=...)` returns the dataset's `RawData` from checked options;
    `load_dataset` carves the validation split and normalises.
    """

    load: Callable[..., RawData]
    options: type[DatasetOptions]
    summary: str
    needs_data_dir: bool

    @property
    def defaults(self) -> dict[str, Any]:
        """Every option with its default, in the order `robustmm list datasets` shows them: those
        the dataset's class declares, those it inherits, then those every dataset has."""
        values = dataclasses.asdict(self.options())
        classes = [c for c in self.options.__mro__ if c is not DatasetOptions] + [DatasetOptions]
        order = [name for c in classes for name in vars(c).get("__annotations__", {}) if name in values]
        return {name: values[name] for name in dict.fromkeys(order)}


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(
    name: str, *, options: type[DatasetOptions], summary: str, needs_data_dir: bool
) -> Callable[[Callable[..., RawData]], Callable[..., RawData]]:
    def deco(fn: Callable[..., RawData]) -> Callable[..., RawData]:
        DATASETS.add(name, DatasetEntry(fn, options, summary, needs_data_dir))
        return fn

    return deco


def dataset_options(name: str, options: Mapping[str, Any] | None = None) -> DatasetOptions:
    """The options of dataset `name` from a mapping over its defaults, typed and checked before
    any file is read."""
    cls = DATASETS.get(name).options
    return parse(cls, options or {}, "dataset", owner=f"dataset {name!r}", noun="option")


def load_dataset(
    name: str, *, data_dir: str | Path | None = None, options: Mapping[str, Any] | None = None
) -> MultimodalDataset:
    entry = DATASETS.get(name)
    opts = dataset_options(name, options)
    if entry.needs_data_dir and data_dir is None:
        raise ConfigError(f"dataset {name!r} needs --data-dir pointing at its files")
    raw = entry.load(data_dir=Path(data_dir) if data_dir is not None else None, options=opts)
    return finish(raw, opts.validation_fraction, opts.validation_seed)


def cache_root() -> Path:
    """Where generated data sets are written when no --data-dir is given."""
    import os

    return Path(os.environ.get("ROBUSTMM_CACHE") or Path.home() / ".cache" / "robustmm")
