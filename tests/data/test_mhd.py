"""The real-MHD loader, fed tiny files written in the release format."""

from __future__ import annotations

import pickle

import pytest
import torch

from robustmm.data import load_dataset
from robustmm.data.mhd import (
    TEST_FILE,
    TRAIN_FILE,
    read_mhd_split,
    save_mhd_split,
    sound_chunks_to_spectrogram,
    spectrogram_to_sound_chunks,
)
from robustmm.errors import ConfigError, DataError


class NotATensor:
    """A pickled object that torch.load(weights_only=True) must refuse."""


def fake_split(n: int, seed: int, traj_range: tuple[float, float] = (0.0, 10.0)) -> dict:
    g = torch.Generator().manual_seed(seed)
    lo, hi = traj_range
    traj = lo + (hi - lo) * torch.rand(n, 200, generator=g)
    traj[0, 0], traj[0, 1] = lo, hi  # pin the range exactly
    return {
        "labels": torch.arange(n) % 10,
        "images": torch.rand(n, 1, 28, 28, generator=g),
        "trajectories": traj,
        "sounds": torch.randn(n, 4, 32, 32, generator=g) * 5 - 20,
        "traj_norm": {"min": torch.tensor(lo), "max": torch.tensor(hi)},
        "sound_norm": {"min": torch.tensor(-40.0), "max": torch.tensor(0.0)},
    }


def write(path, split: dict) -> None:
    save_mhd_split(path, **split)


@pytest.fixture
def mhd_dir(tmp_path):
    write(tmp_path / TRAIN_FILE, fake_split(30, 0))
    write(tmp_path / TEST_FILE, fake_split(12, 1))
    return tmp_path


def test_loads_release_format_with_all_modalities(mhd_dir):
    ds = load_dataset("mhd", data_dir=mhd_dir, options={"modalities": ("image", "trajectory", "sound")})
    assert ds.name == "mhd" and ds.num_classes == 10
    assert ds.modality_names == ("image", "trajectory", "sound")
    kinds = {s.name: (s.kind, s.shape) for s in ds.modalities}
    assert kinds == {
        "image": ("image", (1, 28, 28)),
        "trajectory": ("vector", (200,)),
        "sound": ("sound", (1, 32, 128)),
    }
    # 3 samples per class: one of each class is held out for validation
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (20, 10, 12)
    assert torch.bincount(ds.validation.labels, minlength=10).tolist() == [1] * 10
    for split in (ds.train, ds.validation, ds.test):
        assert split.labels.dtype == torch.int64
        for x in split.inputs.values():
            assert x.dtype == torch.float32
            assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert float(ds.train.inputs["trajectory"].min()) == 0.0
    assert float(ds.train.inputs["trajectory"].max()) == 1.0


def test_default_modalities_and_order(mhd_dir):
    assert load_dataset("mhd", data_dir=mhd_dir).modality_names == ("image", "trajectory")
    ds = load_dataset("mhd", data_dir=mhd_dir, options={"modalities": ["sound", "image"]})
    assert ds.modality_names == ("sound", "image")
    assert set(ds.train.inputs) == {"sound", "image"}


def test_normalisation_uses_train_statistics(tmp_path):
    train = fake_split(20, 0, traj_range=(0.0, 10.0))
    train["trajectories"][:, :2] = torch.tensor([0.0, 10.0])  # the range in every sample, whichever are held out
    write(tmp_path / TRAIN_FILE, train)
    test = fake_split(10, 1, traj_range=(-5.0, 20.0))
    test["trajectories"][1, 0] = 5.0  # mid-range of TRAIN -> 0.5
    write(tmp_path / TEST_FILE, test)
    ds = load_dataset("mhd", data_dir=tmp_path, options={"modalities": ("trajectory",)})
    assert ds.info["norm_stats"]["trajectory"] == pytest.approx((0.0, 10.0))
    x = ds.test.inputs["trajectory"]
    assert float(x[1, 0]) == pytest.approx(0.5)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0  # clamped, not rescaled with test stats
    assert int((x == 0.0).sum()) > 1 and int((x == 1.0).sum()) > 1


def test_missing_files_name_both_and_the_source(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("mhd", data_dir=tmp_path)
    msg = str(err.value)
    assert TRAIN_FILE in msg and TEST_FILE in msg and str(tmp_path) in msg
    assert "github.com/miguelsvasco/gmc" in msg
    write(tmp_path / TRAIN_FILE, fake_split(10, 0))
    with pytest.raises(DataError, match=TEST_FILE):
        load_dataset("mhd", data_dir=tmp_path)


def test_needs_a_data_dir():
    with pytest.raises(ConfigError, match="data-dir"):
        load_dataset("mhd")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda t: t[:5], "6-tuple"),
        (lambda t: (t[0], t[1][:, :, :27], *t[2:]), "images must have shape"),
        (lambda t: (t[0][:-1], *t[1:]), "labels"),
        (lambda t: (t[0], t[1], t[2], t[3].reshape(-1, 1, 32, 128), *t[4:]), "sounds must have shape"),
        (lambda t: (t[0] + 5, *t[1:]), "0..9"),
        (lambda t: (*t[:4], [1, 2], t[5]), "traj_norm"),
    ],
)
def test_malformed_file(tmp_path, mutate, expected):
    s = fake_split(10, 0)
    good = (s["labels"], s["images"], s["trajectories"], s["sounds"], s["traj_norm"], s["sound_norm"])
    torch.save(mutate(good), tmp_path / TRAIN_FILE)
    write(tmp_path / TEST_FILE, fake_split(10, 1))
    with pytest.raises(DataError) as err:
        load_dataset("mhd", data_dir=tmp_path)
    assert TRAIN_FILE in str(err.value) and expected in str(err.value)


def test_refuses_files_that_need_full_unpickling(tmp_path):
    s = fake_split(4, 0)
    torch.save((s["labels"], s["images"], s["trajectories"], s["sounds"], NotATensor(), {}), tmp_path / TRAIN_FILE)
    with pytest.raises(DataError, match="weights_only=True"):
        read_mhd_split(tmp_path / TRAIN_FILE)
    (tmp_path / TEST_FILE).write_bytes(b"not a torch file")
    with pytest.raises(DataError, match=TEST_FILE):
        read_mhd_split(tmp_path / TEST_FILE)


def test_sound_chunks_become_columns(mhd_dir):
    k, t, f = torch.meshgrid(torch.arange(4), torch.arange(32), torch.arange(32), indexing="ij")
    chunks = (1000 * k + 32 * t + f).float()[None].repeat(2, 1, 1, 1)  # [chunk, frame, bin]
    spec = sound_chunks_to_spectrogram(chunks)
    assert spec.shape == (2, 1, 32, 128)
    for c in range(4):  # chunk c fills columns 32c..32c+31, rows are the bins
        assert torch.equal(spec[0, 0, :, 32 * c : 32 * c + 32], chunks[0, c].T)
    assert torch.equal(spectrogram_to_sound_chunks(spec), chunks)

    split = fake_split(4, 0)  # two classes of two: one sample of each is held out for validation
    split["labels"] = torch.tensor([0, 0, 1, 1])
    split["sounds"] = chunks[:1].repeat(4, 1, 1, 1)
    write(mhd_dir / TRAIN_FILE, split)
    ds = load_dataset("mhd", data_dir=mhd_dir, options={"modalities": ("sound",)})
    lo, hi = ds.info["norm_stats"]["sound"]
    assert len(ds.train) == 2
    assert torch.allclose(ds.train.inputs["sound"] * (hi - lo) + lo, spec, atol=1e-2)


def test_unknown_or_empty_modalities(mhd_dir):
    with pytest.raises(ConfigError) as err:
        load_dataset("mhd", data_dir=mhd_dir, options={"modalities": ("image", "audio")})
    assert "'audio'" in str(err.value)
    assert all(m in str(err.value) for m in ("image", "trajectory", "sound"))
    with pytest.raises(ConfigError, match="empty"):
        load_dataset("mhd", data_dir=mhd_dir, options={"modalities": ()})


def test_writer_is_atomic_and_weights_only_loadable(tmp_path):
    s = fake_split(6, 0)
    write(tmp_path / TRAIN_FILE, s)
    assert [p.name for p in tmp_path.iterdir()] == [TRAIN_FILE]  # no temp file left behind
    labels, images, trajs, sounds, traj_norm, sound_norm = torch.load(tmp_path / TRAIN_FILE, weights_only=True)
    assert torch.equal(labels, s["labels"]) and torch.equal(sounds, s["sounds"])
    assert set(traj_norm) == {"min", "max"} and set(sound_norm) == {"min", "max"}
    with pytest.raises(DataError, match="trajectories"):
        save_mhd_split(tmp_path / TEST_FILE, **{**s, "trajectories": torch.zeros(6, 100)})
    assert not (tmp_path / TEST_FILE).exists()


def test_pickle_error_type_is_what_torch_raises(tmp_path):
    torch.save({"x": NotATensor()}, tmp_path / "obj.pt")
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "obj.pt", weights_only=True)
