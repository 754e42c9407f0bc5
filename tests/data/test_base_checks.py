"""The guarantee behind every loader (`check_raw`, run by `finish`): a sane class count, labels
that are class indices, finite inputs — whichever loader read the data."""

from __future__ import annotations

import pytest
import torch

from robustmm.data import base
from robustmm.data.base import MAX_CLASSES, ModalitySpec, RawData, Split, finish, nonfinite
from robustmm.errors import DataError

SPEC = ModalitySpec("x", "vector", (3,))


def raw(train_x: torch.Tensor | None = None, labels: torch.Tensor | None = None, num_classes: int = 2) -> RawData:
    x = torch.rand(8, 3) if train_x is None else train_x
    y = torch.arange(8) % 2 if labels is None else labels
    return RawData("toy", (SPEC,), num_classes, Split({"x": x}, y), Split({"x": torch.rand(4, 3)}, torch.arange(4) % 2))


def test_clean_data_pass():
    assert len(finish(raw(), 0.25, 0).train) == 6


def test_nan_in_a_split_is_refused_with_the_modality_and_sample():
    x = torch.rand(8, 3)
    x[5, 1] = float("nan")
    with pytest.raises(DataError, match=r"dataset 'toy', train split: modality 'x' holds NaN or inf .*sample 5"):
        finish(raw(train_x=x), 0.25, 0)


@pytest.mark.parametrize(
    ("labels", "num_classes", "fragment"),
    [
        (torch.tensor([0, 1, 2, 0, 1, 0, 1, 0]), 2, r"labels run 0\.\.2, outside the class indices 0\.\.1"),
        (torch.tensor([0, 1, -1, 0, 1, 0, 1, 0]), 2, "outside the class indices"),
        (torch.arange(8) % 2 * 1.0, 2, "labels have dtype torch.float32"),
        (torch.arange(8) % 2, MAX_CLASSES + 1, f"at most {MAX_CLASSES}"),
    ],
)
def test_labels_must_be_class_indices(labels, num_classes, fragment):
    with pytest.raises(DataError, match=fragment):
        finish(raw(labels=labels, num_classes=num_classes), 0.25, 0)


def test_nonfinite_scans_in_chunks(monkeypatch):
    monkeypatch.setattr(base, "_FINITE_CHUNK", 6)  # two samples of 3 values per chunk
    x = torch.zeros(9, 3)
    assert nonfinite(x) is None
    x[7, 2] = float("inf")
    assert nonfinite(x) == 7
    assert nonfinite(x.numpy()) == 7
    assert nonfinite(torch.ones(4, 2, dtype=torch.int64)) is None
