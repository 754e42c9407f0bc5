"""MHD (Multimodal Handwritten Digits), the data set of the GMC paper, read from its release files.

The GMC authors publish two files, `mhd_train.pt` (50 000 samples) and `mhd_test.pt`
(10 000), each a torch.save'd 6-tuple

    (labels N, images N×1×28×28, trajectories N×200, sounds N×4×32×32,
     traj_norm {'min', 'max'}, sound_norm {'min', 'max'}).

They are read with `torch.load(weights_only=True)`: a data file must never be able to run code.

The sound is stored as four 32×32 chunks, chunk k = frames 32k..32k+31, each chunk indexed
[frame, mel bin]. The GMC code joins them along the frame axis and transposes, so the network
sees one 1×32×128 spectrogram [mel bin, frame]: chunk k fills columns 32k..32k+31 and
`out[0, f, 32k + t] = chunk[k, t, f]`. This module does the same, and `save_mhd_split` writes
the inverse, so files written here read back bit-identically.

Every modality is scaled to [0, 1] with the TRAIN split's min/max (`minmax_normalise`, after
`load_dataset` carved the validation split out of train); the public rgmc code normalised the
test set with its own statistics, which leaks test data.
`synth-mhd` writes this same format and loads through `load_mhd_dir`.
"""

from __future__ import annotations

import os
import pickle
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import Tensor

from robustmm.data.base import DatasetOptions, ModalitySpec, RawData, Split, check_finite, register_dataset
from robustmm.errors import ConfigError, DataError
from robustmm.files import new_folders, writing

WRITE_FIX = "give another --data-dir (generated data without one go to $ROBUSTMM_CACHE)"
TRAIN_FILE = "mhd_train.pt"
TEST_FILE = "mhd_test.pt"
NUM_CLASSES = 10
SOUND_CHUNKS = 4
SOUND_BINS = 32
SOURCE_HINT = (
    "they come from the GMC authors' MHD release (Poklukar et al.): see the GMC repository "
    "(github.com/miguelsvasco/gmc) README for the download link"
)

MHD_MODALITIES: dict[str, ModalitySpec] = {
    "image": ModalitySpec("image", "image", (1, 28, 28)),
    "trajectory": ModalitySpec("trajectory", "vector", (200,)),
    "sound": ModalitySpec("sound", "sound", (1, SOUND_BINS, SOUND_CHUNKS * SOUND_BINS)),
}


@dataclass
class MHDSplit:
    """One file's content, validated. The sound is joined to N×1×32×128 only when asked for."""

    labels: Tensor
    image: Tensor
    trajectory: Tensor
    sound_chunks: Tensor
    traj_norm: dict[str, Any]
    sound_norm: dict[str, Any]

    @property
    def sound(self) -> Tensor:
        return sound_chunks_to_spectrogram(self.sound_chunks.float())

    def modality(self, name: str) -> Tensor:
        return getattr(self, name)


def sound_chunks_to_spectrogram(chunks: Tensor) -> Tensor:
    """N×4×32×32 [chunk, frame, bin] -> N×1×32×128 [bin, frame], chunk k at columns 32k..32k+31."""
    n = chunks.shape[0]
    return chunks.permute(0, 3, 1, 2).reshape(n, 1, SOUND_BINS, SOUND_CHUNKS * SOUND_BINS)


def spectrogram_to_sound_chunks(spec: Tensor) -> Tensor:
    """Inverse of `sound_chunks_to_spectrogram`: N×1×32×128 (or N×32×128) -> N×4×32×32."""
    n = spec.shape[0]
    return spec.reshape(n, SOUND_BINS, SOUND_CHUNKS, SOUND_BINS).permute(0, 2, 3, 1).contiguous()


def check_modalities(dataset: str, names: tuple[str, ...]) -> None:
    """Refuse an empty or repeating list of names, or one that is no MHD modality."""
    valid = ", ".join(MHD_MODALITIES)
    if not names:
        raise ConfigError(f"dataset {dataset!r}: 'modalities' is empty; pick one or more of {valid}")
    for name in names:
        if name not in MHD_MODALITIES:
            raise ConfigError(f"dataset {dataset!r} has no modality {name!r}; valid modalities: {valid}")
    if len(set(names)) != len(names):
        raise ConfigError(f"dataset {dataset!r}: 'modalities' repeats a name: {list(names)}")


@dataclass(frozen=True)
class MHDOptions(DatasetOptions):
    modalities: tuple[str, ...] = ("image", "trajectory")

    def check(self, path: str) -> None:
        super().check(path)
        check_modalities("mhd", self.modalities)


def _malformed(path: Path, what: str) -> DataError:
    return DataError(f"malformed MHD file {path}: {what}")


def _check_norm(path: Path, field: str, norm: Any) -> dict[str, Any]:
    if not isinstance(norm, Mapping) or not {"min", "max"} <= set(norm):
        raise _malformed(path, f"{field} must be a dict with keys 'min' and 'max', got {type(norm).__name__}")
    return dict(norm)


def _validate(path: Path, obj: Any) -> MHDSplit:
    """Check the 6-tuple's structure, shapes and labels (cheap: no copy of the big tensors)."""
    if not isinstance(obj, (tuple, list)) or len(obj) != 6:
        got = f"a {len(obj)}-tuple" if isinstance(obj, (tuple, list)) else type(obj).__name__
        raise _malformed(
            path,
            f"expected a 6-tuple (labels, images, trajectories, sounds, traj_norm, sound_norm), got {got}",
        )
    labels, images, trajs, sounds, traj_norm, sound_norm = obj
    fields = {"labels": labels, "images": images, "trajectories": trajs, "sounds": sounds}
    for field, value in fields.items():
        if not isinstance(value, Tensor):
            raise _malformed(path, f"{field} must be a tensor, got {type(value).__name__}")
    if labels.dim() != 1:
        raise _malformed(path, f"labels must have shape (N,), got {tuple(labels.shape)}")
    n = labels.shape[0]
    expected = {"images": (1, 28, 28), "trajectories": (200,), "sounds": (SOUND_CHUNKS, SOUND_BINS, SOUND_BINS)}
    for field, shape in expected.items():
        got = tuple(fields[field].shape)
        if got[1:] != shape:
            raise _malformed(path, f"{field} must have shape (N, {', '.join(map(str, shape))}), got {got}")
        if got[0] != n:
            raise _malformed(path, f"{field} has {got[0]} samples but there are {n} labels")
    if labels.dtype.is_floating_point:
        if not torch.equal(labels, labels.round()):
            raise _malformed(path, "labels are not integers")
    elif labels.dtype == torch.bool or labels.dtype.is_complex:
        raise _malformed(path, f"labels have dtype {labels.dtype}, expected an integer dtype")
    labels = labels.to(torch.int64, copy=True)  # small; a copy keeps no memory map alive
    if n and (int(labels.min()) < 0 or int(labels.max()) >= NUM_CLASSES):
        raise _malformed(path, f"labels must lie in 0..{NUM_CLASSES - 1}, got {int(labels.min())}..{int(labels.max())}")
    return MHDSplit(
        labels=labels,
        image=images.float(),
        trajectory=trajs.float(),
        sound_chunks=sounds,
        traj_norm=_check_norm(path, "traj_norm", traj_norm),
        sound_norm=_check_norm(path, "sound_norm", sound_norm),
    )


def _unpickler_reason(exc: Exception) -> str:
    """The part of torch's long weights_only message that says what was refused."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            rest = line.split("WeightsUnpickler error:", 1)[1].strip()
            rest = rest or (lines[i + 1] if i + 1 < len(lines) else "")
            return rest.split(". ")[0][:200]
    return (lines[0] if lines else type(exc).__name__)[:200]


def read_mhd_split(path: str | Path) -> MHDSplit:
    """Read and validate one MHD file; every failure is a DataError naming the file."""
    path = Path(path)
    try:
        try:  # memory-mapped: a modality nobody asked for (often the sound) is never read
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (pre-zip) format
    except pickle.UnpicklingError as exc:
        raise DataError(
            f"{path} cannot be loaded with torch.load(weights_only=True) ({_unpickler_reason(exc)}): "
            "either it is not an MHD file (a corrupt or truncated download) or it holds objects beyond "
            "plain tensors and dicts, which robustmm refuses to unpickle because that could run code. "
            "Re-download it; if you trust its origin, re-save its six fields as plain tensors and dicts "
            "(robustmm.data.mhd.save_mhd_split)"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise DataError(
            f"cannot read {path} as a torch.save file: it is truncated, empty or another format ({reason}); "
            "re-download or regenerate it"
        ) from None
    return _validate(path, obj)


def _norm_value(v: Any) -> Any:
    return torch.as_tensor(v).tolist() if isinstance(v, (Tensor, int, float)) else v


def load_mhd_dir(
    data_dir: str | Path,
    modalities: Iterable[str],
    *,
    name: str = "mhd",
    info: Mapping[str, Any] | None = None,
    missing_hint: str = SOURCE_HINT,
) -> RawData:
    """Read `mhd_train.pt` / `mhd_test.pt` from `data_dir` and keep `modalities` (checked by the
    dataset's options), unscaled (`load_dataset` carves validation from train, then scales with the
    remaining train's stats)."""
    names = tuple(modalities)
    data_dir = Path(data_dir)
    paths = {"train": data_dir / TRAIN_FILE, "test": data_dir / TEST_FILE}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise DataError(
            f"dataset {name!r}: {' and '.join(missing)} not found in {data_dir}; it needs both "
            f"{TRAIN_FILE} and {TEST_FILE} there; {missing_hint}"
        )
    train, test = read_mhd_split(paths["train"]), read_mhd_split(paths["test"])
    inputs = {"train": {m: train.modality(m) for m in names}, "test": {m: test.modality(m) for m in names}}
    for split, values in inputs.items():  # at load time, not blamed on the learning rate after training starts
        for m, x in values.items():
            check_finite(x, f"MHD file {paths[split]}", m)
    meta = {
        "data_dir": str(data_dir),
        "traj_norm": {k: _norm_value(v) for k, v in train.traj_norm.items()},
        "sound_norm": {k: _norm_value(v) for k, v in train.sound_norm.items()},
    }
    meta.update(info or {})
    return RawData(
        name=name,
        modalities=tuple(MHD_MODALITIES[m] for m in names),
        num_classes=NUM_CLASSES,
        train=Split(inputs["train"], train.labels),
        test=Split(inputs["test"], test.labels),
        info=meta,
    )


def save_mhd_split(
    path: str | Path,
    labels: Tensor,
    images: Tensor,
    trajectories: Tensor,
    sounds: Tensor,
    traj_norm: Mapping[str, Any],
    sound_norm: Mapping[str, Any],
) -> None:
    """Write one split in the MHD release format, atomically (temp file + os.replace).

    `sounds` are the N×4×32×32 chunks of the file format (see `spectrogram_to_sound_chunks`).
    A reader never sees a half-written file, and writers racing on the same path each leave
    a complete one.
    """
    path = Path(path)
    obj = (labels, images, trajectories, sounds, dict(traj_norm), dict(sound_norm))
    _validate(path, obj)
    atomic_write(path, lambda fh: torch.save(obj, fh))


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Call `write` on a fresh temp file beside `path`, then rename it over `path`.

    Readers see the old file or the new one, never a torn one; concurrent writers each rename a
    complete file. The temp name is unique per process and call, and the file gets the usual
    umask permissions (mkstemp would make it private). A failed write (disk full, read-only) is
    one ConfigError naming `path`, and the folders made for it are removed again.
    """
    path = Path(path)
    with writing(path, fix=WRITE_FIX), new_folders(path.parent):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "xb") as fh:
                write(fh)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


@register_dataset(
    "mhd",
    options=MHDOptions,
    summary="Multimodal Handwritten Digits (GMC release): image 1x28x28, trajectory 200, sound 1x32x128",
    needs_data_dir=True,
)
def load(*, data_dir: Path, options: MHDOptions) -> RawData:
    if data_dir is None:
        raise ConfigError(f"dataset 'mhd' needs --data-dir pointing at the folder with {TRAIN_FILE} and {TEST_FILE}")
    return load_mhd_dir(data_dir, options.modalities, name="mhd")
