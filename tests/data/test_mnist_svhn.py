"""mnist-svhn through the real code path: tiny MNIST idx-ubyte and SVHN .mat files, written in
the layout torchvision's downloaders produce, loaded with `load_dataset`.

Every image carries its class and its file index in a few pixels, so the tests can decode
which MNIST and which SVHN sample each pair holds after normalisation.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from robustmm.data import mnist_svhn
from robustmm.data.base import Split, load_dataset
from robustmm.errors import ConfigError, DataError

MNIST_MAX = {"train": 200, "t10k": 250}  # max pixel of every MNIST image, per file
SVHN_MAX = 255


def labels_from_counts(counts: list[int], seed: int) -> np.ndarray:
    """Labels with counts[c] samples of class c, in a shuffled (file) order."""
    y = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(seed).permutation(y)


def write_mnist(root: Path, split: str, labels: np.ndarray, gz: bool = False) -> None:
    """Real idx format: big-endian magic 2051 (images, 3 dims) / 2049 (labels, 1 dim)."""
    n = len(labels)
    images = np.zeros((n, 28, 28), np.uint8)
    images[:, 0, 0] = labels
    images[:, 0, 1] = np.arange(n)
    images[:, 0, 2] = MNIST_MAX[split]
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    files = {
        f"{split}-images-idx3-ubyte": struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes(),
        f"{split}-labels-idx1-ubyte": struct.pack(">II", 2049, n) + labels.astype(np.uint8).tobytes(),
    }
    for name, data in files.items():
        if gz:
            with gzip.open(raw / f"{name}.gz", "wb") as f:
                f.write(data)
        else:
            (raw / name).write_bytes(data)


def write_svhn(root: Path, split: str, labels: np.ndarray) -> None:
    """Real .mat layout: X is 32×32×3×N uint8 (H, W, C, N), y is N×1 with 10 meaning digit 0."""
    n = len(labels)
    x = np.zeros((32, 32, 3, n), np.uint8)
    x[0, 0, 0] = labels
    x[0, 1, 0] = np.arange(n)  # W=1
    x[1, 0, 1] = 7  # H=1, channel 1: pins the axis order
    x[0, 0, 2] = SVHN_MAX
    y = np.where(labels == 0, 10, labels).astype(np.uint8)[:, None]
    scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})


MNIST_COUNTS = {"train": [6, 5, 2, 4, 6, 1, 3, 2, 5, 4], "t10k": [2, 1, 1, 1, 2, 1, 1, 1, 1, 1]}
SVHN_COUNTS = {"train": [4, 7, 5, 4, 3, 2, 1, 6, 2, 0], "test": [1, 2, 1, 1, 1, 1, 1, 1, 1, 1]}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for i, split in enumerate(("train", "t10k")):
        write_mnist(tmp_path, split, labels_from_counts(MNIST_COUNTS[split], seed=i))
    for i, split in enumerate(("train", "test")):
        write_svhn(tmp_path, split, labels_from_counts(SVHN_COUNTS[split], seed=10 + i))
    return tmp_path


def pairs(ds, split: str) -> Split:
    """The pairs made from the `split` files: for the train files, train and the validation
    split carved from it, together."""
    if split == "test":
        return ds.test
    both = (ds.train, ds.validation)
    inputs = {k: torch.cat([s.inputs[k] for s in both]) for k in ds.train.inputs}
    return Split(inputs, torch.cat([s.labels for s in both]))


def decode(ds, split: str) -> dict[str, np.ndarray]:
    """Class and file index of the MNIST and SVHN sample in every pair."""
    s = pairs(ds, split).inputs
    m_max = MNIST_MAX["train"]  # train statistics scale both splits
    return {
        "mnist_label": torch.round(s["mnist"][:, 0, 0, 0] * m_max).long().numpy(),
        "mnist_index": torch.round(s["mnist"][:, 0, 0, 1] * m_max).long().numpy(),
        "svhn_label": torch.round(s["svhn"][:, 0, 0, 0] * SVHN_MAX).long().numpy(),
        "svhn_index": torch.round(s["svhn"][:, 0, 0, 1] * SVHN_MAX).long().numpy(),
    }


def expected_counts(split_m: str, split_s: str, max_d: int, dm: int) -> np.ndarray:
    return np.minimum(np.minimum(MNIST_COUNTS[split_m], SVHN_COUNTS[split_s]), max_d) * dm


@pytest.mark.parametrize(("dm", "max_d"), [(1, 10000), (3, 10000), (2, 3)])
def test_pair_counts_and_labels_agree(root: Path, dm: int, max_d: int) -> None:
    ds = load_dataset("mnist-svhn", data_dir=root, options={"dm": dm, "max_d": max_d})
    for split, split_m, split_s in (("train", "train", "train"), ("test", "t10k", "test")):
        labels = pairs(ds, split).labels
        want = expected_counts(split_m, split_s, max_d, dm)
        assert len(labels) == want.sum()
        assert np.bincount(labels.numpy(), minlength=10).tolist() == want.tolist()
        assert ds.info["pairs_per_class"][split] == want.tolist()
        d = decode(ds, split)
        assert np.array_equal(d["mnist_label"], labels.numpy())
        assert np.array_equal(d["svhn_label"], labels.numpy())


def test_each_kept_sample_appears_dm_times_and_max_d_keeps_the_first(root: Path) -> None:
    dm, max_d = 3, 2
    ds = load_dataset("mnist-svhn", data_dir=root, options={"dm": dm, "max_d": max_d})
    d = decode(ds, "train")
    m_labels = labels_from_counts(MNIST_COUNTS["train"], seed=0)
    s_labels = labels_from_counts(SVHN_COUNTS["train"], seed=10)
    for c in range(9):  # class 9 has no SVHN sample
        n = min(MNIST_COUNTS["train"][c], SVHN_COUNTS["train"][c], max_d)
        for key, file_labels in (("mnist_index", m_labels), ("svhn_index", s_labels)):
            used = d[key][d["mnist_label"] == c]
            first_n = np.flatnonzero(file_labels == c)[:n]  # file order, truncated to n
            assert sorted(used.tolist()) == sorted(first_n.tolist() * dm)


def test_match_pairs_gives_the_thesis_count_on_the_real_class_sizes() -> None:
    mnist = np.repeat(np.arange(10), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    svhn = np.repeat(np.arange(10), [4948, 13861, 10585, 8497, 7458, 6882, 5727, 5595, 5045, 4659])
    ia, ib = mnist_svhn.match_pairs(mnist, svhn, max_d=10000, dm=1, rng=np.random.default_rng(0))
    assert len(ia) == len(ib) == 56068
    assert np.array_equal(mnist[ia], svhn[ib])


def test_seed_determines_pairing(root: Path) -> None:
    a = load_dataset("mnist-svhn", data_dir=root, options={"dm": 2, "data_seed": 5})
    b = load_dataset("mnist-svhn", data_dir=root, options={"dm": 2, "data_seed": 5})
    c = load_dataset("mnist-svhn", data_dir=root, options={"dm": 2, "data_seed": 6})
    for name in ("mnist", "svhn"):
        assert torch.equal(a.train.inputs[name], b.train.inputs[name])
        assert torch.equal(a.test.inputs[name], b.test.inputs[name])
    assert not torch.equal(a.train.inputs["mnist"], c.train.inputs["mnist"])
    assert torch.equal(a.train.labels, c.train.labels)  # class-major order does not depend on the seed


def test_specs_shapes_ranges_and_train_statistics(root: Path) -> None:
    ds = load_dataset("mnist-svhn", data_dir=root)
    assert ds.num_classes == 10 and ds.modality_names == ("mnist", "svhn")
    assert [(s.kind, s.shape) for s in ds.modalities] == [("image", (1, 28, 28)), ("rgb", (3, 32, 32))]
    for split in (ds.train, ds.test):
        assert split.labels.dtype == torch.int64
        for x in split.inputs.values():
            assert x.dtype == torch.float32 and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert ds.info["norm_stats"]["mnist"] == (0.0, float(MNIST_MAX["train"]))
    # test MNIST images peak at 250 > the train max 200: scaled by train stats, then clamped
    assert torch.all(ds.test.inputs["mnist"][:, 0, 0, 2] == 1.0)
    assert torch.allclose(ds.train.inputs["mnist"][:, 0, 0, 2], torch.ones(1))
    # SVHN axes: .mat H×W×C×N becomes N×C×H×W
    svhn = ds.train.inputs["svhn"] * SVHN_MAX
    assert torch.allclose(svhn[:, 1, 1, 0], torch.full((1,), 7.0)) and torch.all(svhn[:, 1, 0, 1] == 0)
    assert torch.all(svhn[:, 2, 0, 0] == SVHN_MAX)


def test_svhn_reader_matches_torchvision(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets import SVHN

    monkeypatch.setattr(SVHN, "_check_integrity", lambda self: True)  # tiny files fail the official md5
    for split in ("train", "test"):
        ref = SVHN(str(root), split=split, download=False)
        x, y = mnist_svhn._read_svhn(root, split)
        assert np.array_equal(x, ref.data) and np.array_equal(y, ref.labels)
        assert 0 in y and 10 not in y


def test_modality_subset_and_order(root: Path) -> None:
    full = load_dataset("mnist-svhn", data_dir=root)
    only = load_dataset("mnist-svhn", data_dir=root, options={"modalities": ["svhn"]})
    assert only.modality_names == ("svhn",) and set(only.train.inputs) == {"svhn"}
    assert torch.equal(only.train.inputs["svhn"], full.train.inputs["svhn"])
    swapped = load_dataset("mnist-svhn", data_dir=root, options={"modalities": ("svhn", "mnist")})
    assert swapped.modality_names == ("svhn", "mnist")


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"modalities": ["mnist", "audio"]}, "no modality 'audio'"),
        ({"modalities": []}, "non-empty"),
        ({"dm": 0}, "dm must be a positive integer"),
        ({"max_d": 1.5}, "max_d must be an integer, got 1.5"),
        ({"data_seed": -1}, "data_seed"),
        ({"pairs": 3}, "has no option 'pairs'"),
    ],
)
def test_bad_options(root: Path, options: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_dataset("mnist-svhn", data_dir=root, options=options)


def test_missing_files_say_what_and_where_from(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_dataset("mnist-svhn", data_dir=tmp_path)
    msg = str(e.value)
    for f in ("MNIST/raw/train-images-idx3-ubyte", "MNIST/raw/t10k-labels-idx1-ubyte"):
        assert f in msg
    assert "train_32x32.mat" in msg and "test_32x32.mat" in msg
    assert "torchvision.datasets.MNIST(root, train=True, download=True)" in msg
    assert "split='test', download=True" in msg


def test_missing_svhn_test_file_is_named(root: Path) -> None:
    (root / "test_32x32.mat").unlink()
    with pytest.raises(DataError, match=r"test_32x32\.mat not found.*missing: test_32x32\.mat;"):
        load_dataset("mnist-svhn", data_dir=root)


def test_gzipped_mnist_only_asks_to_decompress(tmp_path: Path) -> None:
    for split in ("train", "t10k"):
        write_mnist(tmp_path, split, labels_from_counts(MNIST_COUNTS[split], seed=0), gz=True)
    with pytest.raises(DataError, match="gunzip"):
        load_dataset("mnist-svhn", data_dir=tmp_path)


def test_malformed_svhn_file(root: Path) -> None:
    scipy.io.savemat(root / "train_32x32.mat", {"X": np.zeros((28, 28, 1, 2), np.uint8), "y": np.ones((2, 1))})
    with pytest.raises(DataError, match="expected 32×32×3×N"):
        load_dataset("mnist-svhn", data_dir=root)
