"""The bring-your-own `npz` dataset: real .npz files written with np.savez, read through
`load_dataset`; a round trip, kind inference, and one clear error per malformed input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robustmm.data import npz  # noqa: F401  (registers the dataset)
from robustmm.data.base import load_dataset
from robustmm.errors import ConfigError, DataError


def arrays(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "label": rng.integers(0, 4, n),
        "img": rng.random((n, 1, 8, 8)),
        "photo": rng.integers(0, 256, (n, 3, 4, 4)).astype(np.uint8),
        "feat": rng.normal(size=(n, 16)).astype(np.float32),
    }


def write(root: Path, train: dict, test: dict, names: tuple[str, str] = ("train.npz", "test.npz")) -> Path:
    np.savez(root / names[0], **train)
    np.savez(root / names[1], **test)
    return root


def test_round_trip_kinds_and_train_statistics(tmp_path: Path) -> None:
    train, test, validation = arrays(12, 0), arrays(5, 1), arrays(3, 2)
    test["label"][0] = 6  # the largest label only in test: num_classes counts both splits
    test["feat"][0, 0] = train["feat"].max() + 10  # beyond the train range: clamped
    validation["feat"][1, 2] = train["feat"].min() - 10
    np.savez(tmp_path / "val.npz", **validation)  # its own validation file: nothing is carved from train
    ds = load_dataset("npz", data_dir=write(tmp_path, train, test), options={"validation_file": "val.npz"})

    assert ds.modality_names == ("feat", "img", "photo")  # sorted, label excluded
    assert {s.name: (s.kind, s.shape) for s in ds.modalities} == {
        "feat": ("vector", (16,)),
        "img": ("image", (1, 8, 8)),
        "photo": ("rgb", (3, 4, 4)),
    }
    assert ds.num_classes == 7
    assert torch.equal(ds.train.labels, torch.from_numpy(train["label"]).long())
    assert torch.equal(ds.validation.labels, torch.from_numpy(validation["label"]).long())
    assert ds.train.labels.dtype == torch.int64 and len(ds.test) == 5
    for name in ds.modality_names:
        lo, hi = float(train[name].min()), float(train[name].max())
        assert ds.info["norm_stats"][name] == pytest.approx((lo, hi))
        for split, raw in ((ds.train, train), (ds.validation, validation), (ds.test, test)):
            want = np.clip((raw[name].astype(np.float64) - lo) / (hi - lo), 0, 1)
            assert np.allclose(split.inputs[name].numpy(), want, atol=1e-6)
            assert split.inputs[name].dtype == torch.float32
    assert float(ds.test.inputs["feat"][0, 0]) == 1.0
    assert float(ds.validation.inputs["feat"][1, 2]) == 0.0
    assert ds.info["files"] == {"train": "train.npz", "test": "test.npz", "validation": "val.npz"}
    assert ds.info["validation"] == {"source": "the dataset's validation files"}


def test_subset_file_names_kinds_and_num_classes(tmp_path: Path) -> None:
    train, test = arrays(6, 0), arrays(4, 1)
    train["spec"], test["spec"] = np.ones((6, 4, 6)), np.zeros((4, 4, 6))  # 2-D per sample: not inferable
    write(tmp_path, train, test, names=("a.npz", "b.npz"))
    ds = load_dataset(
        "npz",
        data_dir=tmp_path,
        options={
            "train_file": "a.npz",
            "test_file": "b.npz",
            "modalities": ["spec", "img"],
            "kinds": {"spec": "sound", "img": "rgb"},
            "num_classes": 10,
        },
    )
    assert ds.modality_names == ("spec", "img")
    assert [s.kind for s in ds.modalities] == ["sound", "rgb"]
    assert ds.num_classes == 10
    assert ds.info["files"] == {"train": "a.npz", "test": "b.npz"}


def _drop(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


def _with(d: dict, **kw: np.ndarray) -> dict:
    return {**d, **kw}


TR, TE = arrays(6, 0), arrays(4, 1)
NAN = TR["img"].copy()
NAN[2, 0, 1, 1] = np.nan
INF = TE["feat"].copy()
INF[0, 3] = np.inf

ERRORS = [
    # (train arrays, test arrays, options, error, message fragment)
    (_drop(TR, "label"), TE, {}, DataError, r"train\.npz has no 'label' array"),
    (TR, _with(TE, label=TE["label"].astype(float)), {}, DataError, "1-D integer array, got dtype float64"),
    (TR, _with(TE, label=-TE["label"] - 1), {}, DataError, "labels must be class indices >= 0"),
    (_with(TR, img=TR["img"][:5]), TE, {}, DataError, "modality 'img' has 5 samples but 'label' has 6"),
    (TR, _drop(TE, "photo"), {}, DataError, r"'photo' is in .*train\.npz but not in .*test\.npz"),
    (TR, _with(TE, extra=np.ones((4, 2))), {}, DataError, r"test\.npz has modalities \['extra'\]"),
    (_with(TR, img=NAN), TE, {}, DataError, "modality 'img' contains NaN or inf"),
    (TR, _with(TE, feat=INF), {}, DataError, "modality 'feat' contains NaN or inf"),
    ({"label": TR["label"]}, {"label": TE["label"]}, {}, DataError, "holds only 'label'; at least one modality"),
    (TR, _with(TE, img=np.ones((4, 1, 8, 9))), {}, DataError, r"shape \(1, 8, 8\) in train but \(1, 8, 9\) in test"),
    (_with(TR, img=TR["img"] > 0.5), TE, {}, DataError, "dtype bool; store integers or floats"),
    (_with(TR, s=np.ones(6)), _with(TE, s=np.ones(4)), {}, DataError, r"shape \(6,\); store N×features"),
    (_with(TR, s=np.ones((6, 2, 3))), _with(TE, s=np.ones((4, 2, 3))), {}, DataError, "pass the option kinds="),
    (TR, TE, {"modalities": ["img", "audio"]}, ConfigError, "has no modality 'audio'; it has feat, img, photo"),
    (TR, TE, {"modalities": []}, ConfigError, "non-empty list"),
    (TR, TE, {"kinds": {"sound": "image"}}, ConfigError, "kinds names 'sound'"),
    (TR, TE, {"kinds": {"img": "video"}}, ConfigError, "unknown kind 'video'"),
    (TR, TE, {"num_classes": 2}, ConfigError, "num_classes=2 must be an integer > the largest label"),
    (TR, TE, {"labels": "y"}, ConfigError, "has no option 'labels'"),
    (TR, TE, {"validation_file": "val.npz"}, DataError, r"validation file .*val\.npz not found"),
    (TR, TE, {"validation_file": ""}, ConfigError, "validation_file must be a file name or null"),
    (TR, TE, {"validation_fraction": 1.0}, ConfigError, "validation_fraction must be a number strictly between 0 and"),
]


@pytest.mark.parametrize(("train", "test", "options", "error", "fragment"), ERRORS)
def test_errors(tmp_path: Path, train: dict, test: dict, options: dict, error: type, fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        load_dataset("npz", data_dir=write(tmp_path, train, test), options=options)


def test_missing_file_names_path_and_layout(tmp_path: Path) -> None:
    np.savez(tmp_path / "train.npz", **TR)
    with pytest.raises(DataError, match=r"test file .*test\.npz not found.*np\.savez\(path, label="):
        load_dataset("npz", data_dir=tmp_path)


def test_object_arrays_are_refused_not_unpickled(tmp_path: Path) -> None:
    write(tmp_path, _with(TR, img=np.array([{"a": 1}] * 6, dtype=object)), TE)
    with pytest.raises(DataError, match="pickled/object data"):
        load_dataset("npz", data_dir=tmp_path)


def test_not_an_npz_archive(tmp_path: Path) -> None:
    np.savez(tmp_path / "test.npz", **TE)
    (tmp_path / "train.npz").write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(DataError, match="not a readable .npz file"):
        load_dataset("npz", data_dir=tmp_path)
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "single.npy").rename(tmp_path / "train.npz")
    with pytest.raises(DataError, match="single .npy array"):
        load_dataset("npz", data_dir=tmp_path)
