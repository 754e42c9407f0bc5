"""The validation split: a seeded, stratified holdout carved from train before normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robustmm.data import npz  # noqa: F401  (registers the dataset)
from robustmm.data.base import DATASETS, load_dataset
from robustmm.data.splits import stratified_holdout
from robustmm.errors import ConfigError, DataError

LABELS = torch.tensor([0] * 50 + [1] * 30 + [2] * 15 + [3] * 4 + [4] * 1)


def test_disjoint_covering_and_sorted() -> None:
    keep, held = stratified_holdout(LABELS, 0.2, seed=0)
    assert torch.equal(torch.sort(torch.cat([keep, held])).values, torch.arange(len(LABELS)))
    assert not set(keep.tolist()) & set(held.tolist())
    assert torch.equal(keep, keep.sort().values) and torch.equal(held, held.sort().values)


def test_stratified_per_class_with_one_of_every_class_that_can_spare_it() -> None:
    _, held = stratified_holdout(LABELS, 0.2, seed=0)
    per_class = torch.bincount(LABELS[held], minlength=5).tolist()
    # 20 % rounded; a class of 4 still gives one; a class of 1 keeps its only sample in train
    assert per_class == [10, 6, 3, 1, 0]
    _, held = stratified_holdout(torch.tensor([0, 0, 1, 1]), 0.01, seed=0)
    assert sorted(LABELS.new_tensor([0, 0, 1, 1])[held].tolist()) == [0, 1]


def test_seeded() -> None:
    a = stratified_holdout(LABELS, 0.1, seed=3)
    b = stratified_holdout(LABELS, 0.1, seed=3)
    c = stratified_holdout(LABELS, 0.1, seed=4)
    assert torch.equal(a[1], b[1]) and torch.equal(a[0], b[0])
    assert not torch.equal(a[1], c[1])


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, True, "0.1", None])
def test_fraction_outside_the_open_interval_is_refused(fraction: object) -> None:
    with pytest.raises(ConfigError, match=r"validation_fraction must be a number strictly between 0 and 1"):
        stratified_holdout(LABELS, fraction, seed=0)  # type: ignore[arg-type]


def test_bad_seed_and_nothing_to_carve() -> None:
    with pytest.raises(ConfigError, match="validation_seed must be a non-negative integer"):
        stratified_holdout(LABELS, 0.1, seed=-1)
    with pytest.raises(DataError, match="no validation split can be carved"):
        stratified_holdout(torch.arange(5), 0.5, seed=0)  # every class has a single sample


def test_every_dataset_accepts_the_validation_options() -> None:
    for name, entry in DATASETS.items():
        assert entry.defaults["validation_fraction"] == 0.1, name
        assert entry.defaults["validation_seed"] == 0, name


def test_normalisation_uses_the_train_that_remains(tmp_path: Path) -> None:
    """The largest and smallest train values sit in samples that go to validation: the scale must
    come from the other train samples, and the validation values beyond it are clamped."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 10)
    feat = rng.uniform(0.0, 1.0, (40, 3)).astype(np.float32)
    keep, held = stratified_holdout(torch.from_numpy(labels), 0.2, seed=7)
    feat[held[0].item(), 0], feat[held[1].item(), 0] = 100.0, -100.0
    test = {"label": np.arange(4), "feat": rng.uniform(0.0, 1.0, (4, 3)).astype(np.float32)}
    np.savez(tmp_path / "train.npz", label=labels, feat=feat)
    np.savez(tmp_path / "test.npz", **test)

    ds = load_dataset("npz", data_dir=tmp_path, options={"validation_fraction": 0.2, "validation_seed": 7})
    assert len(ds.train) == len(keep) and len(ds.validation) == len(held) == 8
    assert torch.equal(ds.validation.labels, torch.from_numpy(labels)[held])
    kept = feat[keep.numpy()]
    lo, hi = float(kept.min()), float(kept.max())
    assert ds.info["norm_stats"]["feat"] == pytest.approx((lo, hi))
    assert hi < 1.0 and lo > 0.0  # not the held-out ±100
    assert np.allclose(ds.train.inputs["feat"].numpy(), (kept - lo) / (hi - lo), atol=1e-6)
    val = ds.validation.inputs["feat"]
    assert float(val[0, 0]) == 1.0 and float(val[1, 0]) == 0.0  # clamped to the train range
    want_test = np.clip((test["feat"] - lo) / (hi - lo), 0, 1)
    assert np.allclose(ds.test.inputs["feat"].numpy(), want_test, atol=1e-6)
    assert ds.info["validation"] == {"source": "carved from train", "fraction": 0.2, "seed": 7}


def test_select_and_to_carry_the_validation_split(toy) -> None:
    only = toy.select(["trajectory"]).to("cpu")
    assert set(only.validation.inputs) == {"trajectory"} and len(only.validation) == len(toy.validation)
    assert torch.equal(only.validation.inputs["trajectory"], toy.validation.inputs["trajectory"])
    assert only.split("validation") is only.validation and only.split("test") is only.test
    with pytest.raises(ConfigError, match="unknown split 'train'"):
        toy.split("train")
