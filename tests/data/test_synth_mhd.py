"""synth-mhd: deterministic, written in the MHD format, read back by the real loader, learnable."""

from __future__ import annotations

import hashlib
import json
import threading

import numpy as np
import pytest
import torch

from robustmm.data import DATASETS, load_dataset, synth_mhd
from robustmm.data.mhd import TEST_FILE, TRAIN_FILE
from robustmm.errors import ConfigError, DataError

SMALL = {"n_train": 600, "n_test": 200}
ALL = ("image", "trajectory", "sound")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    directory = tmp_path_factory.mktemp("synth")
    ds = load_dataset("synth-mhd", data_dir=directory, options={**SMALL, "modalities": ALL})
    return directory, ds


def test_registered_with_documented_defaults():
    entry = DATASETS.get("synth-mhd")
    assert entry.needs_data_dir is False
    assert entry.defaults == {
        "modalities": ("image", "trajectory"),
        "n_train": 20000,
        "n_test": 2000,
        "data_seed": 0,
        "difficulty": 1.0,
        "validation_fraction": 0.1,
        "validation_seed": 0,
    }


def test_shapes_kinds_ranges(small):
    _, ds = small
    assert ds.name == "synth-mhd" and ds.num_classes == 10
    assert {s.name: (s.kind, s.shape) for s in ds.modalities} == {
        "image": ("image", (1, 28, 28)),
        "trajectory": ("vector", (200,)),
        "sound": ("sound", (1, 32, 128)),
    }
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (540, 60, 200)
    for split in (ds.train, ds.validation, ds.test):
        assert split.labels.dtype == torch.int64
        for x in split.inputs.values():
            assert x.dtype == torch.float32 and torch.isfinite(x).all()
            assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_files_are_in_the_mhd_release_format(small):
    directory, _ = small
    labels, images, trajs, sounds, traj_norm, sound_norm = torch.load(directory / TRAIN_FILE, weights_only=True)
    assert labels.shape == (600,) and labels.dtype == torch.int64
    assert images.shape == (600, 1, 28, 28) and 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert trajs.shape == (600, 200)
    assert sounds.shape == (600, 4, 32, 32)
    # raw trajectories in pixel units, with their train range recorded like the real files
    assert float(traj_norm["min"]) == float(trajs.min()) and float(traj_norm["max"]) == float(trajs.max())
    assert float(trajs.max()) > 5.0
    assert set(sound_norm) == {"min", "max"}
    test = torch.load(directory / TEST_FILE, weights_only=True)
    assert len(test) == 6 and test[0].shape == (200,)
    meta = json.loads((directory / synth_mhd.META_FILE).read_text())
    assert meta["n_train"] == 600 and meta["format_version"] == synth_mhd.FORMAT_VERSION


def test_labels_balanced(small):
    _, ds = small
    assert torch.bincount(ds.train.labels, minlength=10).tolist() == [54] * 10
    assert torch.bincount(ds.validation.labels, minlength=10).tolist() == [6] * 10
    assert torch.bincount(ds.test.labels, minlength=10).tolist() == [20] * 10


def test_deterministic_by_seed():
    a = synth_mhd.generate(300, seed=3, split="train")
    b = synth_mhd.generate(300, seed=3, split="train")
    c = synth_mhd.generate(300, seed=4, split="train")
    t = synth_mhd.generate(300, seed=3, split="test")
    for key in ("labels", "image", "trajectory", "sound"):
        assert np.array_equal(a[key], b[key])
    for key in ("image", "trajectory", "sound"):
        assert not np.array_equal(a[key], c[key])
        assert not np.array_equal(a[key], t[key])


def test_same_options_give_bit_identical_files(tmp_path):
    opts = {"n_train": 50, "n_test": 20, "data_seed": 7}
    for name in ("a", "b"):
        load_dataset("synth-mhd", data_dir=tmp_path / name, options=opts)
    for file in (TRAIN_FILE, TEST_FILE):
        digests = {hashlib.sha256((tmp_path / name / file).read_bytes()).hexdigest() for name in ("a", "b")}
        assert len(digests) == 1


def test_cache_dir_is_keyed_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTMM_CACHE", str(tmp_path))
    opts = {"n_train": 40, "n_test": 20, "data_seed": 1, "difficulty": 0.5}
    first = load_dataset("synth-mhd", options=opts)
    key = synth_mhd.cache_key(40, 20, 1, 0.5)
    assert all(str(v) in key for v in (40, 20, 1, 0.5)) and f"v{synth_mhd.FORMAT_VERSION}" in key
    directory = tmp_path / "synth-mhd" / key
    assert (directory / TRAIN_FILE).is_file() and (directory / TEST_FILE).is_file()

    def boom(*args, **kwargs):
        raise AssertionError("regenerated although the files exist")

    monkeypatch.setattr(synth_mhd, "generate", boom)
    again = load_dataset("synth-mhd", options=opts)
    assert torch.equal(first.train.inputs["image"], again.train.inputs["image"])


def test_concurrent_generation_of_one_key(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTMM_CACHE", str(tmp_path))
    opts = {"n_train": 30, "n_test": 10, "data_seed": 2}
    results, errors = [], []

    def work():
        try:
            results.append(load_dataset("synth-mhd", options=opts))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 3
    assert all(torch.equal(r.train.inputs["trajectory"], results[0].train.inputs["trajectory"]) for r in results)
    leftovers = [p.name for p in (tmp_path / "synth-mhd").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_refuses_foreign_or_mismatched_files(tmp_path):
    load_dataset("synth-mhd", data_dir=tmp_path / "a", options={"n_train": 20, "n_test": 10})
    with pytest.raises(DataError, match="other options"):
        load_dataset("synth-mhd", data_dir=tmp_path / "a", options={"n_train": 30, "n_test": 10})
    (tmp_path / "a" / synth_mhd.META_FILE).unlink()
    with pytest.raises(DataError, match="did not write"):
        load_dataset("synth-mhd", data_dir=tmp_path / "a", options={"n_train": 20, "n_test": 10})


@pytest.mark.parametrize(
    "options",
    [{"n_train": 0}, {"n_test": -1}, {"data_seed": 1.5}, {"difficulty": -0.1}, {"modalities": ("image", "smell")}],
)
def test_bad_options(tmp_path, options):
    with pytest.raises(ConfigError):
        load_dataset("synth-mhd", data_dir=tmp_path, options=options)
    assert not any(tmp_path.iterdir())  # rejected before generating anything


def _holdout_accuracy(x: torch.Tensor, y: torch.Tensor, n_fit: int, steps: int) -> float:
    """A one-hidden-layer MLP, full-batch Adam; accuracy on the samples after `n_fit`."""
    torch.manual_seed(0)
    x = x.flatten(1)
    x = (x - x[:n_fit].mean(0)) / (x[:n_fit].std(0) + 1e-3)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 64), torch.nn.GELU(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x[:n_fit]), y[:n_fit]).backward()
        opt.step()
    with torch.no_grad():
        return float((net(x[n_fit:]).argmax(1) == y[n_fit:]).float().mean())


def test_each_modality_is_learnable_and_image_is_harder():
    data = synth_mhd.generate(2500, seed=11, split="train")
    y = torch.from_numpy(data["labels"])
    traj = _holdout_accuracy(torch.from_numpy(data["trajectory"]), y, 2000, 150)
    image = _holdout_accuracy(torch.from_numpy(data["image"]), y, 2000, 150)
    assert traj > 0.80
    assert image > 0.60
    assert traj > image


def test_trajectory_is_interleaved_xy_tracing_the_image():
    data = synth_mhd.generate(200, seed=0, split="train", difficulty=0.0)
    ones = data["labels"] == 1  # a one is drawn in one pen-down stroke: every point is inked
    pts = data["trajectory"][ones].reshape(-1, 100, 2)
    img = data["image"][ones, 0]
    x, y = np.clip(pts.astype(int), 0, 27).transpose(2, 0, 1)
    rows = np.arange(len(img))[:, None]
    assert img[rows, y, x].mean() > 0.6  # x = even entries (column), y = odd entries (row)
    assert img[rows, x, y].mean() < 0.2  # the transposed reading misses the upright stroke
