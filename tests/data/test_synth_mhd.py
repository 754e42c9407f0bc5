"""synth-mhd: deterministic, written in the MHD format, read back by the real loader, learnable."""

from __future__ import annotations

import hashlib
import json
import threading

import numpy as np
import pytest
import torch

from robustmm.data import DATASETS, load_dataset, synth_mhd
from robustmm.data.base import dataset_options
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
        "image_noise": 1.0,
        "traj_noise": 1.0,
        "traj_warp": 1.0,
        "traj_confusion": 0.1,
        "sound_noise": 1.0,
        "sound_confusion": 0.3,
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


def test_cache_key_of_options_as_yaml_writes_them():
    # ints for the float options (YAML, --set) key the same files as the floats they stand for
    o = dataset_options("synth-mhd", {"n_train": 40, "difficulty": 1, "image_noise": 2})
    key = synth_mhd.cache_key(o.n_train, o.n_test, o.data_seed, o.difficulty, **o.knobs())
    assert key == f"v{synth_mhd.FORMAT_VERSION}-train40-test2000-seed0-diff1-image_noise2"
    assert key == synth_mhd.cache_key(40, 2000, 0, 1.0, image_noise=2.0)


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
    [
        {"n_train": 0},
        {"n_test": -1},
        {"data_seed": 1.5},
        {"difficulty": -0.1},
        {"traj_confusion": 1.5},
        {"sound_noise": "loud"},
        {"modalities": ("image", "smell")},
    ],
)
def test_bad_options(tmp_path, options):
    with pytest.raises(ConfigError):
        load_dataset("synth-mhd", data_dir=tmp_path, options=options)
    assert not any(tmp_path.iterdir())  # rejected before generating anything


def _linear_probe(train: torch.Tensor, y_train: torch.Tensor, test: torch.Tensor, y_test: torch.Tensor) -> float:
    """Multinomial logistic regression (standardised features, small L2, full-batch L-BFGS);
    accuracy on the test samples."""
    torch.manual_seed(0)
    mean, std = train.mean(0), train.std(0) + 1e-3
    train, test = (train - mean) / std, (test - mean) / std
    lin = torch.nn.Linear(train.shape[1], 10)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=50, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(train), y_train) + 1e-2 * lin.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float((lin(test).argmax(1) == y_test).float().mean())


@pytest.mark.slow  # generates 4000 three-modality samples and fits four probes
def test_linear_probes_rank_the_modalities_like_mhd():
    """Real MHD: the image is the dominant modality, the trajectory weaker, the sound weakest
    (the thesis' MDAE loses far more without the image than without the trajectory)."""
    torch.set_num_threads(1)
    train = synth_mhd.generate(3000, seed=0, split="train")
    test = synth_mhd.generate(1000, seed=0, split="test")

    def x(data, names):
        return torch.cat([torch.from_numpy(np.ascontiguousarray(data[m])).flatten(1) for m in names], 1)

    y_train, y_test = torch.from_numpy(train["labels"]), torch.from_numpy(test["labels"])
    acc = {m: _linear_probe(x(train, [m]), y_train, x(test, [m]), y_test) for m in ALL}
    acc["all"] = _linear_probe(x(train, ALL), y_train, x(test, ALL), y_test)
    assert acc["image"] > acc["trajectory"] > acc["sound"], acc
    assert acc["image"] < 1.0 and acc["trajectory"] < 0.95, acc  # neither is linearly trivial
    assert acc["trajectory"] > 0.1 + 0.2 and acc["sound"] > 0.1 + 0.1, acc  # both carry the class
    assert acc["all"] >= acc["image"] - 0.02, acc


def test_difficulty_knobs_act_on_their_modality_only():
    base = synth_mhd.generate(200, seed=5, split="train")
    for knob, changed in (("image_noise", "image"), ("traj_noise", "trajectory"), ("sound_noise", "sound")):
        other = synth_mhd.generate(200, seed=5, split="train", **{knob: 2.0})
        assert np.array_equal(base["labels"], other["labels"])
        for m in ALL:
            assert np.array_equal(base[m], other[m]) != (m == changed), (knob, m)


def test_confusion_swaps_the_trajectory_for_a_look_alike_digit():
    at_zero = synth_mhd.generate(300, seed=1, split="train", difficulty=0.0, traj_confusion=1.0)
    clean = synth_mhd.generate(300, seed=1, split="train", difficulty=0.0)
    assert np.array_equal(at_zero["trajectory"], clean["trajectory"])  # difficulty 0: clean templates
    swapped = synth_mhd.generate(300, seed=1, split="train", traj_confusion=1.0, traj_noise=0.0, traj_warp=0.0)
    kept = synth_mhd.generate(300, seed=1, split="train", traj_confusion=0.0, traj_noise=0.0, traj_warp=0.0)
    assert np.array_equal(swapped["image"], kept["image"])
    moved = np.abs(swapped["trajectory"] - kept["trajectory"]).mean(1)
    assert (moved > 1.0).mean() > 0.95  # every trajectory now shows another digit


def test_trajectory_is_interleaved_xy_tracing_the_image():
    data = synth_mhd.generate(200, seed=0, split="train", difficulty=0.0)
    ones = data["labels"] == 1  # a one is drawn in one pen-down stroke: every point is inked
    pts = data["trajectory"][ones].reshape(-1, 100, 2)
    img = data["image"][ones, 0]
    x, y = np.clip(pts.astype(int), 0, 27).transpose(2, 0, 1)
    rows = np.arange(len(img))[:, None]
    assert img[rows, y, x].mean() > 0.6  # x = even entries (column), y = odd entries (row)
    assert img[rows, x, y].mean() < 0.2  # the transposed reading misses the upright stroke
