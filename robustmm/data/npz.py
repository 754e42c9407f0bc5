"""Bring-your-own modalities from two `.npz` files (e.g. precomputed audio/visual embeddings).

Layout: `<data_dir>/train.npz` and `<data_dir>/test.npz` (names configurable), and optionally a
validation file (option `validation_file`; without it the validation split is carved from
train, options `validation_fraction` / `validation_seed`), each written with
`np.savez(path, label=y, <modality>=x, ...)`: one array per modality whose first axis is the
sample, plus an integer `label` array of the same length. Files are read with
allow_pickle=False, so object arrays are refused rather than executed.

Kind inference (the kind picks the encoder/decoder family), from the per-sample shape:
    1-D            -> "vector"
    3-D, 3 channels -> "rgb"      (C×H×W)
    3-D otherwise   -> "image"    (e.g. 1×28×28, or a 1×32×128 spectrogram)
Anything else (2-D per sample, 4-D, ...) has no obvious family: pass `kinds={"name": kind}`.
`kinds` may name only some modalities; the others are inferred.

Every modality is min-max scaled to [0, 1] with TRAIN statistics (`minmax_normalise`, computed
after the validation split was carved out).
"""

from __future__ import annotations

import logging
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robustmm.data.base import (
    MAX_CLASSES,
    MODALITY_KINDS,
    DatasetOptions,
    ModalitySpec,
    RawData,
    Split,
    nonfinite,
    register_dataset,
)
from robustmm.errors import ConfigError, DataError

log = logging.getLogger(__name__)

LABEL = "label"


def infer_kind(name: str, shape: tuple[int, ...]) -> str:
    """The kind for a per-sample shape, or a DataError asking for an explicit `kinds` entry."""
    if len(shape) == 1:
        return "vector"
    if len(shape) == 3:
        return "rgb" if shape[0] == 3 else "image"
    raise DataError(
        f"npz: cannot infer the kind of modality {name!r} with per-sample shape {shape} "
        f"(only 1-D -> vector and 3-D C×H×W -> image/rgb are inferred); "
        f"pass the option kinds={{{name!r}: one of {', '.join(MODALITY_KINDS)}}}"
    )


def _read(path: Path, split: str) -> dict[str, np.ndarray]:
    if path.is_dir():
        raise DataError(f"npz: {split} file {path} is a folder, not an .npz file written with np.savez")
    if not path.is_file():
        raise DataError(
            f"npz: {split} file {path} not found; expected a directory holding the train and test files "
            f"(options train_file/test_file, and validation_file if given), each written with "
            f"np.savez(path, label=<N ints>, "
            f"<modality>=<N×...>, ...)"
        )
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except OSError as e:
        raise DataError(f"npz: cannot read {path}: {e.strerror}") from None
    if magic[:4] != b"PK\x03\x04" and magic != b"\x93NUMPY":
        raise DataError(
            f"npz: {path} is not a readable .npz file (no zip archive: empty, or another format); "
            "write it with np.savez"
        )
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(f"npz: {path} is a single .npy array, not an .npz archive of named arrays")
        with loaded as f:
            arrays = {k: f[k] for k in f.files}
    except ValueError as e:
        if "pickle" in str(e):  # object arrays (or a pickle) would need allow_pickle=True
            raise DataError(f"npz: {path} holds pickled/object data ({e}); store plain numeric arrays") from None
        raise DataError(f"npz: {path} is not a readable .npz file ({e}); write it again with np.savez") from None
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise DataError(f"npz: {path} is not a readable .npz file ({e}); write it again with np.savez") from None
    except MemoryError:
        raise DataError(f"npz: {path} declares arrays larger than this machine's memory") from None
    if LABEL not in arrays:
        raise DataError(f"npz: {path} has no {LABEL!r} array (it has {', '.join(sorted(arrays)) or 'none'})")
    labels = arrays[LABEL]
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"npz: {path}: {LABEL!r} must be a 1-D integer array, got dtype {labels.dtype} shape {labels.shape}; "
            f"store class indices, e.g. y.astype(np.int64)"
        )
    if len(labels) == 0:
        raise DataError(f"npz: {path} holds no samples")
    if labels.min() < 0:
        raise DataError(f"npz: {path}: labels must be class indices >= 0, found {int(labels.min())}")
    if labels.max() >= MAX_CLASSES:  # before anything is sized by the class count
        raise DataError(
            f"npz: {path}: label {int(labels.max())} is not a class index (at most {MAX_CLASSES} classes); "
            f"store class indices 0..K-1, e.g. np.unique(y, return_inverse=True)[1]"
        )
    return arrays


def _check_modality(path: Path, name: str, x: np.ndarray, n: int) -> None:
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"npz: {path}: modality {name!r} has dtype {x.dtype}; store integers or floats")
    if x.ndim < 2:
        raise DataError(f"npz: {path}: modality {name!r} has shape {x.shape}; store N×features (e.g. x[:, None])")
    if len(x) != n:
        raise DataError(f"npz: {path}: modality {name!r} has {len(x)} samples but {LABEL!r} has {n}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        i = nonfinite(x)
        raise DataError(
            f"npz: {path}: modality {name!r} contains NaN or inf values (first in sample {i}); "
            "clean or drop those samples (e.g. np.nan_to_num) and save again"
        )


def _select(modalities: Sequence[str] | None, train: Mapping[str, np.ndarray], train_path: Path) -> list[str]:
    available = sorted(k for k in train if k != LABEL)
    if modalities is None:
        if not available:
            raise DataError(f"npz: {train_path} holds only {LABEL!r}; at least one modality array is needed")
        return available
    names = list(modalities)
    for n in names:
        if n == LABEL or n not in available:
            raise ConfigError(f"npz: {train_path} has no modality {n!r}; it has {', '.join(available) or 'none'}")
    return names


@dataclass(frozen=True)
class NpzOptions(DatasetOptions):
    """The files in --data-dir, the modalities to load (None: every array but the labels), a kind
    per modality where its shape leaves it open, and the class count (None: the largest label + 1)."""

    modalities: tuple[str, ...] | None = None
    train_file: str = "train.npz"
    test_file: str = "test.npz"
    validation_file: str | None = None
    kinds: dict[str, str] | None = None
    num_classes: int | None = None

    def check(self, path: str) -> None:
        super().check(path)
        names = self.modalities
        if names is not None and (not names or len(set(names)) != len(names)):
            raise ConfigError(f"npz option modalities must be a non-empty list without repeats, got {list(names)}")
        if self.validation_file == "":
            raise ConfigError("npz option validation_file must be a file name or null, got ''")
        if self.num_classes is not None and not 2 <= self.num_classes <= MAX_CLASSES:
            raise ConfigError(
                f"npz option num_classes must be an integer in [2, {MAX_CLASSES}] or null, got {self.num_classes!r}"
            )


@register_dataset(
    "npz",
    options=NpzOptions,
    summary="bring your own modalities: train.npz/test.npz (and a validation file, optional) "
    "with one array per modality plus 'label'",
    needs_data_dir=True,
)
def load(*, data_dir: Path, options: NpzOptions) -> RawData:
    """Read, validate and infer kinds; every problem is one DataError/ConfigError."""
    modalities, num_classes = options.modalities, options.num_classes
    files = {"train": options.train_file, "test": options.test_file}
    if options.validation_file is not None:
        files["validation"] = options.validation_file
    paths = {split: Path(data_dir) / f for split, f in files.items()}
    arrays = {split: _read(path, split) for split, path in paths.items()}
    names = _select(modalities, arrays["train"], paths["train"])
    for split in [s for s in paths if s != "train"]:
        extra = sorted(set(arrays[split]) - set(arrays["train"]))
        if modalities is None and extra:
            raise DataError(
                f"npz: {paths[split]} has modalities {extra} that {paths['train']} lacks; "
                f"add them to the train file or name the ones to load with the option modalities"
            )

    for split, path in paths.items():
        n = len(arrays[split][LABEL])
        for name in names:
            if name not in arrays[split]:
                raise DataError(f"npz: modality {name!r} is in {paths['train']} but not in {path}")
            _check_modality(path, name, arrays[split][name], n)
    for name in names:
        tr = arrays["train"][name].shape[1:]
        for split in [s for s in paths if s != "train"]:
            other = arrays[split][name].shape[1:]
            if tr != other:
                raise DataError(f"npz: modality {name!r} has per-sample shape {tr} in train but {other} in {split}")

    kinds = options.kinds or {}
    unknown = sorted(set(kinds) - set(names))
    if unknown:
        raise ConfigError(f"npz option kinds names {unknown[0]!r}, which is not a loaded modality ({', '.join(names)})")
    specs = []
    for name in names:
        shape = tuple(int(s) for s in arrays["train"][name].shape[1:])
        specs.append(ModalitySpec(name, kinds.get(name) or infer_kind(name, shape), shape))

    max_label = int(max(arrays[s][LABEL].max() for s in arrays))
    if num_classes is None:
        num_classes = max_label + 1
    elif num_classes <= max_label:
        where = next(str(paths[s]) for s in arrays if int(arrays[s][LABEL].max()) == max_label)
        raise ConfigError(
            f"npz option num_classes={num_classes!r} must be an integer > the largest label {max_label} (in {where})"
        )

    splits = {
        s: Split(
            {n: torch.from_numpy(arrays[s][n].astype(np.float32)) for n in names},
            torch.from_numpy(arrays[s][LABEL].astype(np.int64)),
        )
        for s in arrays
    }
    log.info(
        "npz: %s samples, modalities %s, %d classes",
        " / ".join(f"{len(v)} {s}" for s, v in splits.items()),
        ", ".join(f"{s.name}:{s.kind}{s.shape}" for s in specs),
        num_classes,
    )
    return RawData(
        name="npz",
        modalities=tuple(specs),
        num_classes=int(num_classes),
        train=splits["train"],
        test=splits["test"],
        validation=splits.get("validation"),
        info={"files": {s: str(f) for s, f in files.items()}},
    )
