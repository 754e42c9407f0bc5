"""MNIST-SVHN: digit pairs of a handwritten MNIST image and an SVHN house-number crop.

The pairs are built per class as in the MMVAE code (Shi et al. 2019, `make-mnist-svhn-idx.py`,
`rand_match_on_idx`): for every label c, take the indices of class c in MNIST and in SVHN,
truncate both to n_c = min(#MNIST_c, #SVHN_c, max_d), and `dm` times permute each list at
random and zip them. So a split has dm * sum_c n_c pairs, ordered class by class. With dm=1,
max_d=10000 the full training files give 56 068 pairs (the count reported in seed 000's
thesis); the test pairs come from the test files in the same way.

Differences from MMVAE, on purpose: the randomness is a seeded numpy Generator (`data_seed`)
so the data do not change with the run seed; the per-class index lists keep file order before
truncation (MMVAE took them from an unstable `torch.sort`); and values are min-max scaled with
TRAIN-split statistics (`minmax_normalise`) instead of `ToTensor`'s fixed /255, which gives the
same [0, 1] range for 8-bit images. The validation split is carved from the train pairs; with
dm > 1 an image occurs in several pairs, so a validation pair may share one image with a train pair.

Files are the ones torchvision's downloaders write (run them once on a machine with internet):
    <data_dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte   MNIST(root, download=True)
    <data_dir>/train_32x32.mat, <data_dir>/test_32x32.mat             SVHN(root, split=..., download=True)
MNIST is read with `torchvision.datasets.MNIST(download=False)`. SVHN is read with
`scipy.io.loadmat` exactly as `torchvision.datasets.SVHN` does (X H×W×C×N -> N×C×H×W, label
10 -> digit 0), because torchvision's class insists on the official files' md5, which costs a
hash of 180 MB on every load and rules out the small real-format files the tests write.

Memory: every pair is materialised as float32, so dm=30 (MMVAE's default) needs ~20 GB for the
SVHN side alone; the default dm=1 holds about 1 GB (both splits, both modalities). Selecting
one modality still pairs through both data sets (the pairs define the split), but only the
selected one is kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robustmm.data.base import DatasetOptions, ModalitySpec, RawData, Split, check_finite, register_dataset
from robustmm.errors import ConfigError, DataError

log = logging.getLogger(__name__)

MODALITIES = {
    "mnist": ModalitySpec("mnist", "image", (1, 28, 28)),
    "svhn": ModalitySpec("svhn", "rgb", (3, 32, 32)),
}
MNIST_FILES = tuple(f"{split}-{kind}-ubyte" for split in ("train", "t10k") for kind in ("images-idx3", "labels-idx1"))
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
HOW_TO_GET = (
    "they are the files torchvision's downloaders write: on a machine with internet run "
    "`torchvision.datasets.MNIST(root, train=True, download=True)` (writes all four MNIST files) and "
    "`torchvision.datasets.SVHN(root, split='train', download=True)` and "
    "`torchvision.datasets.SVHN(root, split='test', download=True)`, then copy root here"
)


def _expected_layout(data_dir: Path) -> str:
    files = [f"MNIST/raw/{f}" for f in MNIST_FILES] + list(SVHN_FILES.values())
    missing = [f for f in files if not (data_dir / f).is_file()]
    gz = [f for f in missing if (data_dir / f"{f}.gz").is_file()]
    hint = f" ({', '.join(gz)} exist only gzipped: decompress them with gunzip)" if gz else ""
    return (
        f"mnist-svhn expects under {data_dir}: {', '.join(files)}; missing: {', '.join(missing) or 'none'}"
        f"{hint}; {HOW_TO_GET}"
    )


def _read_mnist(data_dir: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """uint8 N×28×28 images and int64 labels, through torchvision's own reader."""
    from torchvision.datasets import MNIST

    try:
        ds = MNIST(str(data_dir), train=train, download=False)
    except RuntimeError as e:  # torchvision's "Dataset not found"
        raise DataError(f"MNIST files not found: {_expected_layout(data_dir)}") from e
    except (AssertionError, TypeError, ValueError) as e:  # torchvision's idx parser on a bad file
        raise DataError(f"MNIST files under {data_dir / 'MNIST' / 'raw'} are malformed: {e}") from e
    images, labels = ds.data.numpy(), ds.targets.numpy().astype(np.int64)
    which = "train" if train else "t10k"
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise DataError(f"MNIST {which} files hold images {images.shape}, labels {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(
            f"MNIST file {data_dir / 'MNIST' / 'raw' / f'{which}-labels-idx1-ubyte'}: labels run "
            f"{int(labels.min())}..{int(labels.max())}, outside the digits 0-9"
        )
    return images, labels


def _read_svhn(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 N×3×32×32 images and int64 labels 0-9, as torchvision.datasets.SVHN reads them."""
    try:
        import scipy.io
    except ImportError as e:  # torchvision's SVHN needs it too; it is not a torchvision dependency
        raise DataError("reading SVHN's .mat files needs scipy: pip install scipy") from e

    path = data_dir / SVHN_FILES[split]
    if not path.is_file():
        raise DataError(f"SVHN file {SVHN_FILES[split]} not found: {_expected_layout(data_dir)}")
    try:
        mat = scipy.io.loadmat(path)
        images, labels = mat["X"], mat["y"].astype(np.int64).reshape(-1)
    except (ValueError, KeyError, OSError, TypeError) as e:
        raise DataError(f"SVHN file {path} is not a readable .mat with arrays 'X' and 'y': {e}") from e
    if images.ndim != 4 or images.shape[:3] != (32, 32, 3) or images.shape[3] != len(labels):
        raise DataError(f"SVHN file {path}: X has shape {images.shape}, y {labels.shape}; expected 32×32×3×N and N")
    labels[labels == 10] = 0  # SVHN stores digit 0 as label 10
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"SVHN file {path}: labels run {int(labels.min())}..{int(labels.max())}, outside 1-10")
    images = np.ascontiguousarray(images.transpose(3, 2, 0, 1))
    check_finite(images, f"SVHN file {path}", "svhn")
    return images, labels


def match_pairs(
    labels_a: np.ndarray, labels_b: np.ndarray, *, max_d: int, dm: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """MMVAE's `rand_match_on_idx`: index pairs (ia, ib) with labels_a[ia] == labels_b[ib].

    Per class c (those present in `labels_a`, as MMVAE iterates over its first data set's
    labels) n_c = min(#a_c, #b_c, max_d) indices of each side are kept; each of the dm
    repetitions pairs an independent random permutation of one side with one of the other.
    """
    out_a, out_b = [], []
    for c in np.unique(labels_a):
        ia, ib = np.flatnonzero(labels_a == c), np.flatnonzero(labels_b == c)
        n = min(len(ia), len(ib), max_d)
        if n == 0:
            continue
        perms = np.tile(np.arange(n), (dm, 1))
        out_a.append(ia[:n][rng.permuted(perms, axis=1)].reshape(-1))
        out_b.append(ib[:n][rng.permuted(perms, axis=1)].reshape(-1))
    if not out_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_a), np.concatenate(out_b)


@dataclass(frozen=True)
class MnistSvhnOptions(DatasetOptions):
    """The pairing of the module docstring: at most `max_d` images of each class, `dm` shuffles."""

    modalities: tuple[str, ...] = ("mnist", "svhn")
    dm: int = 1
    max_d: int = 10000
    data_seed: int = 0

    def check(self, path: str) -> None:
        super().check(path)
        names = self.modalities
        for n in names:
            if n not in MODALITIES:
                raise ConfigError(f"mnist-svhn has no modality {n!r}; it has {', '.join(MODALITIES)}")
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"mnist-svhn modalities must be a non-empty list without repeats, got {list(names)}")
        for name in ("dm", "max_d"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{path}.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.data_seed < 0:
            raise ConfigError(f"{path}.data_seed must be a non-negative integer, got {self.data_seed!r}")


@register_dataset(
    "mnist-svhn",
    options=MnistSvhnOptions,
    summary="MNIST digits paired with SVHN digits of the same class (MMVAE pairing; torchvision files)",
    needs_data_dir=True,
)
def load(*, data_dir: Path, options: MnistSvhnOptions) -> RawData:
    """Pair the train files into the train split and the test files into the test split."""
    names, dm, max_d, data_seed = options.modalities, options.dm, options.max_d, options.data_seed
    data_dir = Path(data_dir)
    # Separate streams, so the test pairs do not depend on how many draws the train pairs took.
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(int(data_seed)).spawn(2)]

    raw: dict[str, dict[str, torch.Tensor]] = {}
    labels: dict[str, torch.Tensor] = {}
    counts: dict[str, list[int]] = {}
    for (split, train), rng in zip((("train", True), ("test", False)), rngs, strict=True):
        mnist_x, mnist_y = _read_mnist(data_dir, train)
        svhn_x, svhn_y = _read_svhn(data_dir, split)
        ia, ib = match_pairs(mnist_y, svhn_y, max_d=max_d, dm=dm, rng=rng)
        if len(ia) == 0:
            raise DataError(f"mnist-svhn: the {split} files share no class, so there are no pairs")
        assert np.array_equal(mnist_y[ia], svhn_y[ib])
        raw[split] = {}
        for n in names:  # only the selected modalities are materialised
            x = mnist_x[ia][:, None] if n == "mnist" else svhn_x[ib]
            raw[split][n] = torch.from_numpy(x).float()
        labels[split] = torch.from_numpy(mnist_y[ia])
        counts[split] = np.bincount(mnist_y[ia], minlength=10).tolist()
        log.info("mnist-svhn %s: %d pairs from %d MNIST and %d SVHN images", split, len(ia), len(mnist_y), len(svhn_y))

    return RawData(
        name="mnist-svhn",
        modalities=tuple(MODALITIES[n] for n in names),
        num_classes=10,
        train=Split(raw["train"], labels["train"]),
        test=Split(raw["test"], labels["test"]),
        info={"pairs_per_class": counts, "dm": dm, "max_d": max_d, "data_seed": int(data_seed)},
    )
