"""No test sample reaches a sweep's objectives.

The trainable itself (`train_trial`: load the data, train, evaluate, compute the objectives)
runs here without Ray, with `ray.tune`'s report/checkpoint calls captured. Two data directories
hold the same train file and different test files: the test labels scrambled and the test
inputs replaced by others on a much wider range (so test statistics leaking into the scaling
would show too). The trials' objectives must be identical; the same trials scored on test
instead must differ, which shows that the changed test files are visible to the check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robustmm.tune import trainable
from robustmm.tune.space import parse_sweep

from sweep_helpers import TINY_GRID, tiny_sweep


class FakeTune:
    """What train_trial calls on `ray.tune`, recorded instead of sent to a Ray session."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []

    def report(self, metrics: dict[str, Any], checkpoint: Any = None) -> None:
        self.reports.append(dict(metrics))

    def get_checkpoint(self) -> None:
        return None

    class Checkpoint:
        @staticmethod
        def from_directory(path: str) -> str:
            return path


def write_npz(root: Path, seed: int, test_scale: float, scramble: bool) -> Path:
    """Class-dependent blobs (train identical for every call); the test split drawn with `seed`."""
    g = np.random.default_rng(0)
    protos_img, protos_traj = g.random((10, 1, 28, 28)), g.random((10, 40))

    def draw(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        y = np.arange(n) % 10
        img = protos_img[y] + 0.25 * rng.standard_normal((n, 1, 28, 28))
        traj = protos_traj[y] + 0.25 * rng.standard_normal((n, 40))
        return {"label": y, "image": img.astype(np.float32), "trajectory": traj.astype(np.float32)}

    root.mkdir()
    np.savez(root / "train.npz", **draw(300, np.random.default_rng(1)))
    test = draw(100, np.random.default_rng(seed))
    test["image"] *= test_scale
    test["trajectory"] *= test_scale
    if scramble:
        test["label"] = np.random.default_rng(seed).permutation(test["label"])
    np.savez(root / "test.npz", **test)
    return root


def objectives(monkeypatch: pytest.MonkeyPatch, data_dir: Path, split: str | None = None) -> dict[str, Any]:
    raw = tiny_sweep(
        run={
            "train": {"epochs": 6},
            "classifier": {"epochs": 6},
            "eval": {"grid": TINY_GRID, "batched": True},
        }
    )
    raw["run"]["dataset"] = {"name": "npz", "data_dir": str(data_dir)}  # no synth-mhd options
    spec = parse_sweep(raw)
    fake = FakeTune()
    monkeypatch.setattr(trainable, "tune", fake)
    if split is not None:  # the control: the same trial scored on another split
        monkeypatch.setattr(trainable, "SWEEP_SPLIT", split)
    trainable.train_trial({"model.tau": 0.2, trainable.NUMBER_KEY: 0}, spec)
    final = fake.reports[-1]
    assert final["trial_status"] == "complete", final
    return {k: final[k] for k in (*spec.keys, "split")}


@pytest.mark.slow  # four trials trained and evaluated end to end
def test_scrambled_test_files_leave_the_objectives_unchanged(monkeypatch, tmp_path):
    clean = write_npz(tmp_path / "a", seed=2, test_scale=1.0, scramble=False)
    other = write_npz(tmp_path / "b", seed=3, test_scale=25.0, scramble=True)
    a = objectives(monkeypatch, clean)
    b = objectives(monkeypatch, other)
    assert a["split"] == b["split"] == "validation"
    assert a == b
    assert a["clean_accuracy"] > 0.3  # the trial learned something: equal objectives are not both trivial

    # the control: scored on test, the two data directories give different objectives
    ta = objectives(monkeypatch, clean, split="test")
    tb = objectives(monkeypatch, other, split="test")
    assert ta["split"] == tb["split"] == "test"
    assert ta["clean_accuracy"] != tb["clean_accuracy"]
