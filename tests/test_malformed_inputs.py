"""Malformed inputs, one table: every case is one error line on stderr, exit code 2, and the
file tree exactly as it was.

Each case builds its inputs in a fresh folder (the working directory of the command), snapshots
the tree (paths, sizes, mtimes, content hashes), runs the CLI in this process and checks: exit
code 2; exactly one `robustmm: error: ...` line, the last one on stderr, holding the expected
words (the bad value or file, and the fix); any other stderr line is a progress line; nothing on
stdout; no traceback; no secret; and the tree unchanged. Nothing here starts Ray or trains: a
sweep case fails in the checks before Ray starts, a run case before the first epoch.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from robustmm.cli import main
from robustmm.redact import has_secret

SECRET = "s3cr3t-pw"
GARBAGE = bytes(range(256)) * 4  # not UTF-8, not YAML, not Parquet, not a zip

SPACE: dict[str, Any] = {
    "name": "tiny",
    "run": {
        "model": {"name": "gmc", "latent_dim": 16, "common_dim": 16},
        "dataset": {"name": "synth-mhd", "n_train": 400, "n_test": 100},
        "train": {"epochs": 1},
        "classifier": {"epochs": 1},
        "device": "cpu",
    },
    "space": {"model.tau": {"type": "float", "low": 0.05, "high": 0.5}},
    "objectives": ["clean_accuracy", {"name": "worst_modality_auc", "attack": "pgd"}],
    "budget": {"num_samples": 2, "max_concurrent": 1},
}
TRIALS = pd.DataFrame(
    {
        "trial": [0, 1],
        "status": ["complete", "complete"],
        "clean_accuracy": [0.9, 0.8],
        "worst_modality_auc_pgd": [0.3, 0.5],
        "param.model.tau": [0.1, 0.25],
    }
)
TINY_NPZ = ["--dataset", "npz", "--data-dir", "data", "--model", "gmc", "--epochs", "1", "--classifier-epochs", "1"]
TINY_NPZ += ["--set", "train.batch_size=8", "--set", "classifier.batch_size=8", "--device", "cpu"]


# ------------------------------------------------------------------------------------ builders


def space(**changes: Any) -> dict[str, Any]:
    """SPACE with top-level sections replaced (None drops one)."""
    out = {k: v for k, v in SPACE.items() if k not in changes}
    out.update({k: v for k, v in changes.items() if v is not None})
    return out


def put(name: str, content: str | bytes) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)

    return build


def put_yaml(name: str, value: Any) -> Callable[[Path], None]:
    return put(name, yaml.safe_dump(value, sort_keys=False))


def folder(name: str) -> Callable[[Path], None]:
    return lambda root: (root / name).mkdir(parents=True)


def npz_arrays(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "label": np.arange(n) % 4,
        "a": rng.random((n, 8)).astype(np.float32),
        "b": rng.random((n, 6)).astype(np.float32),
    }


def npz_data(train: dict | None = None, test: dict | None = None, where: str = "data") -> Callable[[Path], None]:
    """An npz dataset in `where`: 40 train and 12 test samples of two vector modalities, with
    `train` / `test` replacing arrays (a value None drops the array)."""

    def build(root: Path) -> None:
        (root / where).mkdir(parents=True, exist_ok=True)
        for name, n, seed, changes in (("train", 40, 0, train), ("test", 12, 1, test)):
            arrays = npz_arrays(n, seed)
            for k, v in (changes or {}).items():
                if v is None:
                    arrays.pop(k)
                else:
                    arrays[k] = v(arrays[k]) if callable(v) else v
            np.savez(root / where / f"{name}.npz", **arrays)

    return build


def with_value(index: tuple, value: float) -> Callable[[np.ndarray], np.ndarray]:
    def change(x: np.ndarray) -> np.ndarray:
        x = x.copy()
        x[index] = value
        return x

    return change


def mhd_data(
    train: Callable[[list], Any] | None = None, raw_train: bytes | None = None, where: str = "mhd"
) -> Callable[[Path], None]:
    """MHD release files (20 train, 10 test samples) in `where`; `train` edits the train tuple's
    fields before it is saved, `raw_train` replaces the train file's bytes."""

    def fields(n: int, seed: int) -> list:
        g = torch.Generator().manual_seed(seed)
        return [
            torch.arange(n) % 10,
            torch.rand(n, 1, 28, 28, generator=g),
            torch.rand(n, 200, generator=g),
            torch.rand(n, 4, 32, 32, generator=g),
            {"min": torch.tensor(0.0), "max": torch.tensor(1.0)},
            {"min": torch.tensor(0.0), "max": torch.tensor(1.0)},
        ]

    def build(root: Path) -> None:
        (root / where).mkdir(parents=True, exist_ok=True)
        tr = fields(20, 0)
        obj = train(tr) if train is not None else tuple(tr)
        torch.save(obj, root / where / "mhd_train.pt")
        torch.save(tuple(fields(10, 1)), root / where / "mhd_test.pt")
        if raw_train is not None:
            (root / where / "mhd_train.pt").write_bytes(raw_train(root) if callable(raw_train) else raw_train)

    return build


def edit(index: int, change: Callable[[Any], Any]) -> Callable[[list], tuple]:
    def apply(fields: list) -> tuple:
        fields = list(fields)
        fields[index] = change(fields[index])
        return tuple(fields)

    return apply


def nan_at(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t[3, 0, 5, 5] = float("nan")
    return t


def truncated_mhd(root: Path) -> bytes:
    buf = io.BytesIO()
    torch.save((torch.arange(20) % 10, torch.rand(20, 1, 28, 28)), buf)
    return buf.getvalue()[: len(buf.getvalue()) // 2]


def sweep_dir(
    where: str = "sweep", spec: Any = SPACE, trials: pd.DataFrame | bytes | None = TRIALS, state: Any = None
) -> Callable[[Path], None]:
    """A sweep folder as `robustmm sweep` leaves it (sweep.yaml, trials.parquet, sweep.json), by
    hand; bytes replace a file's content."""

    def build(root: Path) -> None:
        d = root / where
        d.mkdir(parents=True)
        text = spec if isinstance(spec, bytes) else yaml.safe_dump(spec, sort_keys=False).encode()
        (d / "sweep.yaml").write_bytes(text)
        if isinstance(trials, bytes):
            (d / "trials.parquet").write_bytes(trials)
        elif trials is not None:
            trials.to_parquet(d / "trials.parquet", index=False)
        if state is not None:
            (d / "sweep.json").write_bytes(state if isinstance(state, bytes) else str(state).encode())

    return build


def truncated_parquet() -> bytes:
    buf = io.BytesIO()
    TRIALS.to_parquet(buf, index=False)
    return buf.getvalue()[:-20]


def all_of(*builds: Callable[[Path], None]) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        for b in builds:
            b(root)

    return build


# ------------------------------------------------------------------------- patched environments


def _inside(path: Any, top: str) -> bool:
    try:
        p = os.path.abspath(os.fspath(path))
    except TypeError:  # a file descriptor
        return False
    return p == top or p.startswith(top + os.sep)


def read_only(name: str) -> Callable[[Path, pytest.MonkeyPatch], None]:
    """Make the folder `name` refuse new entries: chmod 0555, and where that does not bind (as
    root), the calls robustmm creates files and folders through raise the PermissionError a
    read-only folder gives."""

    def patch(root: Path, mp: pytest.MonkeyPatch) -> None:
        top = str(root / name)
        os.chmod(top, 0o555)
        try:
            probe = os.path.join(top, ".probe")
            os.close(os.open(probe, os.O_CREAT | os.O_WRONLY))
            os.unlink(probe)  # the mode did not bind: emulate it
        except PermissionError:
            return
        denied = lambda p: PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(p))  # noqa: E731
        real_mkdir, real_open, real_io_open, real_replace = os.mkdir, os.open, io.open, os.replace

        def mkdir(path: Any, mode: int = 0o777, *, dir_fd: Any = None) -> None:
            if _inside(path, top) and not os.path.exists(path):
                raise denied(path)
            return real_mkdir(path, mode, dir_fd=dir_fd)

        def os_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: Any = None) -> int:
            if flags & os.O_CREAT and _inside(path, top) and not os.path.exists(path):
                raise denied(path)
            return real_open(path, flags, mode, dir_fd=dir_fd)

        def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if any(c in mode for c in "wax+") and _inside(file, top) and not os.path.exists(file):
                raise denied(file)
            return real_io_open(file, mode, *args, **kwargs)

        def replace(src: Any, dst: Any, **kwargs: Any) -> None:
            if _inside(dst, top):
                raise denied(dst)
            return real_replace(src, dst, **kwargs)

        mp.setattr(os, "mkdir", mkdir)
        mp.setattr(os, "open", os_open)
        mp.setattr(io, "open", open_)
        mp.setattr(builtins, "open", open_)
        mp.setattr(os, "replace", replace)

    return patch


def disk_full(name: str) -> Callable[[Path, pytest.MonkeyPatch], None]:
    """Every text write under `name` fails as on a full disk (ENOSPC)."""

    def patch(root: Path, mp: pytest.MonkeyPatch) -> None:
        top = str(root / name)
        real = Path.write_text

        def write_text(self: Path, *args: Any, **kwargs: Any) -> int:
            if _inside(self, top):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
            return real(self, *args, **kwargs)

        mp.setattr(Path, "write_text", write_text)

    return patch


def env(name: str, value: str) -> Callable[[Path, pytest.MonkeyPatch], None]:
    return lambda root, mp: mp.setenv(name, str(root / value) if value.startswith("./") else value)


def patches(*ps: Callable[[Path, pytest.MonkeyPatch], None]) -> Callable[[Path, pytest.MonkeyPatch], None]:
    def patch(root: Path, mp: pytest.MonkeyPatch) -> None:
        for p in ps:
            p(root, mp)

    return patch


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [*{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}, *{a}]\n"
    for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)


# ----------------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    id: str
    argv: list[str]
    expect: tuple[str, ...]
    setup: Callable[[Path], None] | None = None
    patch: Callable[[Path, pytest.MonkeyPatch], None] | None = None


SWEEP = ["sweep", "space.yaml", "--out", "out"]
SPACE_FILE = put_yaml("space.yaml", SPACE)

CASES = [
    # ---- the command line itself
    Case("cli-no-command", [], ("the following arguments are required: command", "robustmm --help")),
    Case("cli-unknown-command", ["frobnicate"], ("invalid choice: 'frobnicate'",)),
    Case("cli-unknown-flag", ["run", "--bogus"], ("unrecognized arguments: --bogus",)),
    Case("cli-epochs-not-int", ["run", "--epochs", "x"], ("--epochs: invalid int value: 'x'", "robustmm run --help")),
    Case("cli-list-unknown", ["list", "modles"], ("invalid choice: 'modles'",)),
    Case("cli-list-missing", ["list"], ("the following arguments are required: what", "robustmm list --help")),
    Case("cli-pick-trial-not-int", ["pick", "sweep", "--trial", "one"], ("--trial: invalid int value: 'one'",)),
    Case(
        "seeds-reversed",
        ["run", "--seeds", "5-2"],
        ("seeds '5-2' not understood: the range 5-2 is reversed; write 2-5",),
    ),
    Case("seeds-not-numbers", ["run", "--seeds", "a-b"], ("seeds 'a-b' not understood; write e.g. 0-9",)),
    Case("seeds-negative", ["run", "--seeds", "-3"], ("seeds '-3' must be non-negative",)),
    Case("seeds-repeat", ["run", "--seeds", "1,1"], ("seeds '1,1' repeat a seed",)),
    Case("seeds-huge-range", ["run", "--seeds", "0-99999999999"], ("holds more than 10000 seeds",)),
    Case("unknown-model", ["run", "--model", "gmcwdd"], ("unknown model 'gmcwdd' (did you mean 'gmcwd'?)",)),
    Case("unknown-dataset", ["run", "--dataset", "mhdd"], ("unknown dataset 'mhdd'",)),
    Case("unknown-grid", ["run", "--grid", "thesys"], ("unknown grid 'thesys'",)),
    Case(
        "unknown-attack",
        ["run", *TINY_NPZ, "--set", "eval.grid=[{attack: fgsmm, eps: 0.1}]"],
        ("unknown attack 'fgsmm' (did you mean 'fgsm'?)",),
        npz_data(),
    ),
    Case("negative-epochs", ["run", "--epochs", "-2"], ("train.epochs must be ≥ 0, got -2",)),
    Case("lr-inf", ["run", "--set", "train.lr=.inf"], ("train.lr must be a finite number, got inf",)),
    Case("lr-inf-word", ["run", "--set", "train.lr=inf"], ("train.lr must be a finite number, got 'inf'",)),
    Case("classifier-lr-nan", ["run", "--set", "classifier.lr=.nan"], ("classifier.lr must be a finite number",)),
    Case("set-no-equals", ["run", "--set", "train.lr"], ("--set 'train.lr' must look like section.key=value",)),
    Case("set-unknown-section", ["run", "--set", "trian.lr=1"], ("unknown section 'trian'",)),
    Case("set-bad-yaml", ["run", "--set", "train.lr=[1"], ("value '[1' is not valid YAML",)),
    Case("set-wrong-type", ["run", "--set", "train.epochs=two"], ("train.epochs must be an integer, got 'two'",)),
    Case("set-unknown-key", ["run", "--set", "train.lrr=0.1"], ("no key 'lrr' (did you mean 'lr'?)",)),
    Case("unknown-device", ["run", "--device", "tpu"], ("device 'tpu' unknown; use auto, cpu, cuda or cuda:N",)),
    # ---- run config files
    Case("config-missing", ["run", "--config", "nope.yaml"], ("config file 'nope.yaml' does not exist",)),
    Case(
        "config-is-folder", ["run", "--config", "conf"], ("config file 'conf' is a folder, not a file",), folder("conf")
    ),
    Case(
        "config-binary",
        ["run", "--config", "c.yaml"],
        ("config file 'c.yaml' is not a text file", "not UTF-8", "give a YAML file"),
        put("c.yaml", GARBAGE),
    ),
    Case(
        "config-bad-yaml",
        ["run", "--config", "c.yaml"],
        ("config file 'c.yaml' is not valid YAML at line 3, column 1",),
        put("c.yaml", "seeds: 1\nmodel: [unclosed\n"),
    ),
    Case(
        "config-nul-byte",
        ["run", "--config", "c.yaml"],
        ("config file 'c.yaml' is not valid YAML", "unacceptable character"),
        put("c.yaml", "model: gmc\x00\n"),
    ),
    Case(
        "config-list",
        ["run", "--config", "c.yaml"],
        ("config file 'c.yaml' must hold a mapping of sections, got a list",),
        put("c.yaml", "- model\n- dataset\n"),
    ),
    Case(
        "config-scalar",
        ["run", "--config", "c.yaml"],
        ("config file 'c.yaml' must hold a mapping of sections, got a str",),
        put("c.yaml", "just words\n"),
    ),
    Case(
        "config-python-tag",
        ["run", "--config", "c.yaml"],
        ("config file 'c.yaml' is not valid YAML", "python/object"),
        put("c.yaml", "model: !!python/object/apply:os.system ['true']\n"),
    ),
    Case(
        "config-unknown-section",
        ["run", "--config", "c.yaml"],
        ("unknown config section 'modle'",),
        put_yaml("c.yaml", {"modle": {"name": "gmc"}}),
    ),
    Case(
        "config-section-not-mapping",
        ["run", "--config", "c.yaml"],
        ("config section 'train' must be a mapping or null, got 5",),
        put_yaml("c.yaml", {"train": 5}),
    ),
    Case(
        "config-lr-inf",
        ["run", "--config", "c.yaml"],
        ("classifier.lr must be a finite number, got inf",),
        put("c.yaml", "classifier: {lr: .inf}\n"),
    ),
    Case(
        "config-seeds-bool",
        ["run", "--config", "c.yaml"],
        ("seeds must be integers, got True",),
        put("c.yaml", "seeds: true\n"),
    ),
    Case(
        "config-alias-bomb",
        ["run", "--config", "c.yaml"],
        ("config file 'c.yaml' expands to more than 1000000 values through its aliases",),
        put("c.yaml", ALIAS_BOMB + "model: {name: gmc, tau: *i}\n"),
    ),
    # ---- folders
    Case("data-dir-missing", ["run", "--dataset", "npz", "--data-dir", "nowhere"], ("'nowhere' is not a directory",)),
    Case(
        "data-dir-is-file",
        ["run", "--data-dir", "f.txt"],
        ("--data-dir 'f.txt' is not a directory",),
        put("f.txt", "x"),
    ),
    Case(
        "run-out-is-file",
        ["run", "--out", "f.txt"],
        ("--out 'f.txt' exists and is not a directory",),
        put("f.txt", "x"),
    ),
    Case(
        "run-out-read-only",
        ["run", *TINY_NPZ, "--out", "ro/out"],
        ("cannot write 'ro/out' (permission denied); choose another --out",),
        all_of(npz_data(), folder("ro")),
        read_only("ro"),
    ),
    Case(
        "run-disk-full",
        ["run", *TINY_NPZ, "--out", "out"],
        ("cannot write 'out/config.yaml': the disk holding 'out' is full", "free some space or choose another --out"),
        npz_data(),
        disk_full("out"),
    ),
    # ---- data files: npz
    Case(
        "npz-huge-label",
        ["run", *TINY_NPZ],
        ("train.npz: label 2000000000 is not a class index", "np.unique(y, return_inverse=True)"),
        npz_data(train={"label": with_value((3,), 2_000_000_000)}),
    ),
    Case(
        "npz-nan",
        ["run", *TINY_NPZ],
        ("train.npz: modality 'a' contains NaN or inf values (first in sample 7)",),
        npz_data(train={"a": with_value((7, 2), np.nan)}),
    ),
    Case(
        "npz-inf-in-test",
        ["run", *TINY_NPZ],
        ("test.npz: modality 'b' contains NaN or inf values",),
        npz_data(test={"b": with_value((0, 0), -np.inf)}),
    ),
    Case(
        "npz-no-label",
        ["run", *TINY_NPZ],
        ("train.npz has no 'label' array (it has a, b)",),
        npz_data(train={"label": None}),
    ),
    Case(
        "npz-lengths-differ",
        ["run", *TINY_NPZ],
        ("test.npz: modality 'a' has 5 samples but 'label' has 12",),
        npz_data(test={"a": lambda x: x[:5]}),
    ),
    Case(
        "npz-float-labels",
        ["run", *TINY_NPZ],
        ("'label' must be a 1-D integer array, got dtype float64", "y.astype(np.int64)"),
        npz_data(train={"label": lambda y: y.astype(float)}),
    ),
    Case(
        "npz-garbage",
        ["run", *TINY_NPZ],
        ("npz: data/train.npz is not a readable .npz file", "np.savez"),
        all_of(npz_data(), put("data/train.npz", GARBAGE)),
    ),
    Case(
        "npz-file-is-folder",
        ["run", *TINY_NPZ],
        ("npz: train file data/train.npz is a folder",),
        all_of(npz_data(), lambda root: (root / "data/train.npz").unlink(), folder("data/train.npz")),
    ),
    Case(
        "npz-test-missing",
        ["run", *TINY_NPZ, "--set", "dataset.test_file=other.npz"],
        ("npz: test file data/other.npz not found",),
        npz_data(),
    ),
    Case(
        "npz-num-classes-huge",
        ["run", *TINY_NPZ, "--set", "dataset.num_classes=2000000000"],
        ("npz option num_classes must be an integer in [2, 100000] or null, got 2000000000",),
        npz_data(),
    ),
    # ---- data files: MHD
    Case(
        "mhd-nan",
        ["run", "--dataset", "mhd", "--data-dir", "mhd"],
        ("MHD file mhd/mhd_train.pt: modality 'image' holds NaN or inf values (first in sample 3)",),
        mhd_data(train=edit(1, nan_at)),
    ),
    Case(
        "mhd-label-out-of-range",
        ["run", "--dataset", "mhd", "--data-dir", "mhd"],
        ("malformed MHD file mhd/mhd_train.pt: labels must lie in 0..9, got 0..12",),
        mhd_data(train=edit(0, lambda y: torch.where(y == 9, 12, y))),
    ),
    Case(
        "mhd-truncated",
        ["run", "--dataset", "mhd", "--data-dir", "mhd"],
        ("mhd/mhd_train.pt", "re-download or regenerate it"),
        mhd_data(raw_train=truncated_mhd),
    ),
    Case(
        "mhd-empty-file",
        ["run", "--dataset", "mhd", "--data-dir", "mhd"],
        ("mhd/mhd_train.pt",),
        mhd_data(raw_train=b""),
    ),
    Case(
        "mhd-not-a-tuple",
        ["run", "--dataset", "mhd", "--data-dir", "mhd"],
        ("malformed MHD file mhd/mhd_train.pt: expected a 6-tuple", "got dict"),
        mhd_data(train=lambda fields: {"labels": fields[0]}),
    ),
    Case(
        "mhd-missing-file",
        ["run", "--dataset", "mhd", "--data-dir", "mhd"],
        ("mhd_test.pt not found in mhd",),
        all_of(mhd_data(), lambda root: (root / "mhd" / "mhd_test.pt").unlink()),
    ),
    # ---- data files: generated and torchvision ones
    Case(
        "synth-cache-read-only",
        ["run", "--set", "dataset.n_train=100", "--set", "dataset.n_test=20", "--model", "gmc"],
        ("cannot write", "ro/cache/synth-mhd/", "(permission denied); give another --data-dir"),
        folder("ro"),
        patches(env("ROBUSTMM_CACHE", "./ro/cache"), read_only("ro")),
    ),
    Case(
        "synth-over-foreign-files",
        ["run", "--data-dir", "mhd", "--set", "dataset.n_train=100", "--set", "dataset.n_test=20"],
        ("mhd holds MHD files that synth-mhd did not write", "refusing to overwrite them"),
        mhd_data(),
    ),
    Case(
        "mnist-svhn-missing-files",
        ["run", "--dataset", "mnist-svhn", "--data-dir", "empty"],
        ("MNIST files not found", "missing: MNIST/raw/train-images-idx3-ubyte"),
        folder("empty"),
    ),
    # ---- search spaces (`robustmm sweep SPACE.yaml`)
    Case("space-missing", SWEEP, ("search space 'space.yaml' does not exist",)),
    Case("space-is-folder", SWEEP, ("search space 'space.yaml' is a folder, not a file",), folder("space.yaml")),
    Case("space-binary", SWEEP, ("search space 'space.yaml' is not a text file",), put("space.yaml", GARBAGE)),
    Case("space-bad-yaml", SWEEP, ("search space 'space.yaml' is not valid YAML",), put("space.yaml", "name: [x\n")),
    Case("space-list", SWEEP, ("search space 'space.yaml' must hold a mapping",), put("space.yaml", "- name\n")),
    Case("space-empty", SWEEP, ("sweep name None must be a plain file name",), put("space.yaml", "")),
    Case(
        "space-name-dot", SWEEP, ("sweep name '.' must be a plain file name",), put_yaml("space.yaml", space(name="."))
    ),
    Case(
        "space-name-dotdot",
        SWEEP,
        ("sweep name '..' must be a plain file name",),
        put_yaml("space.yaml", space(name="..")),
    ),
    Case("space-name-slash", SWEEP, ("sweep name 'a/b' must be",), put_yaml("space.yaml", space(name="a/b"))),
    Case("space-name-300", SWEEP, ("must be a plain file name: 1-100",), put_yaml("space.yaml", space(name="n" * 300))),
    Case(
        "space-unknown-section",
        SWEEP,
        ("the sweep has no key 'spaces' (did you mean 'space'?)",),
        put_yaml("space.yaml", {**SPACE, "spaces": {}}),
    ),
    Case(
        "space-empty-range",
        SWEEP,
        ("space.model.tau: the range [0.5, 0.5] is empty",),
        put_yaml("space.yaml", space(space={"model.tau": {"type": "float", "low": 0.5, "high": 0.5}})),
    ),
    Case(
        "space-inf-bound",
        SWEEP,
        ("space.train.lr.high must be a finite number or null, got inf",),
        put(
            "space.yaml", yaml.safe_dump(space(space=None)) + "space: {train.lr: {type: float, low: 0.1, high: .inf}}\n"
        ),
    ),
    Case(
        "space-bad-param-type",
        SWEEP,
        ("space.model.tau must be a mapping with type one of float, int, categorical",),
        put_yaml("space.yaml", space(space={"model.tau": {"type": "gaussian"}})),
    ),
    Case(
        "space-one-objective",
        SWEEP,
        ("a sweep needs 2 or more objectives",),
        put_yaml("space.yaml", space(objectives=["clean_accuracy"])),
    ),
    Case(
        "space-evaluates-on-test",
        SWEEP,
        ("run.eval.split is 'test', but a sweep selects on validation",),
        put_yaml("space.yaml", space(run={**SPACE["run"], "eval": {"split": "test"}})),
    ),
    # ---- sweep: tracking server, --out, --resume
    Case(
        "sweep-tracking-unreachable-secret",
        [*SWEEP, "--tracking-uri", f"http://user:{SECRET}@127.0.0.1:9/"],
        ("cannot reach the MLflow tracking server 'http://127.0.0.1:9/' (Connection refused)", "fix --tracking-uri"),
        SPACE_FILE,
    ),
    Case(
        "sweep-tracking-env-secret",
        SWEEP,
        ("cannot reach the MLflow tracking server 'http://127.0.0.1:9'",),
        SPACE_FILE,
        env("MLFLOW_TRACKING_URI", f"http://user:{SECRET}@127.0.0.1:9"),
    ),
    Case(
        "sweep-tracking-not-a-uri",
        [*SWEEP, "--tracking-uri", "mlflow.example"],
        ("tracking URI 'mlflow.example' is not a URI",),
        SPACE_FILE,
    ),
    Case(
        "sweep-tracking-token-in-uri",
        [*SWEEP, "--tracking-uri", f"https://{SECRET}@127.0.0.1:9"],
        ("set MLFLOW_TRACKING_TOKEN instead",),
        SPACE_FILE,
    ),
    Case(
        "sweep-data-dir-is-file",
        [*SWEEP, "--data-dir", "space.yaml"],
        ("--data-dir 'space.yaml' is not a directory",),
        SPACE_FILE,
    ),
    Case(
        "sweep-out-read-only",
        ["sweep", "space.yaml", "--out", "ro/out"],
        ("cannot write the sweep folder", "ro/out", "choose another --out"),
        all_of(SPACE_FILE, folder("ro")),
        read_only("ro"),
    ),
    Case(
        "sweep-resume-bad-json",
        ["sweep", "space.yaml", "--out", "sweep", "--resume"],
        ("sweep.json' is not valid JSON (line 1, column 2", "start the sweep afresh in another --out"),
        all_of(SPACE_FILE, sweep_dir(state=b"{oops")),
    ),
    Case(
        "sweep-resume-binary-json",
        ["sweep", "space.yaml", "--out", "sweep", "--resume"],
        ("sweep.json' is not a text file",),
        all_of(SPACE_FILE, sweep_dir(state=GARBAGE)),
    ),
    Case(
        "sweep-resume-json-list",
        ["sweep", "space.yaml", "--out", "sweep", "--resume"],
        ("sweep.json' must hold a JSON object",),
        all_of(SPACE_FILE, sweep_dir(state=b"[1, 2]")),
    ),
    Case(
        "sweep-resume-json-lacks-keys",
        ["sweep", "space.yaml", "--out", "sweep", "--resume"],
        ("sweep.json' lacks experiment, parent_run_id",),
        all_of(SPACE_FILE, sweep_dir(state=b'{"storage": "x"}')),
    ),
    Case(
        "sweep-resume-binary-yaml",
        ["sweep", "space.yaml", "--out", "sweep", "--resume"],
        ("sweep.yaml' is not a text file",),
        all_of(
            SPACE_FILE,
            sweep_dir(
                spec=GARBAGE,
                state=b'{"tracking_uri": "sqlite:///x.db", "parent_run_id": "r", "storage": "s", '
                b'"experiment": "tiny", "optuna_storage": "sqlite:///o.db"}',
            ),
        ),
    ),
    # ---- pareto / pick on a sweep folder
    Case(
        "pareto-corrupt-trials",
        ["pareto", "sweep"],
        ("trials table 'sweep/trials.parquet' is not a readable Parquet file", "--resume"),
        sweep_dir(trials=GARBAGE),
    ),
    Case(
        "pick-truncated-trials",
        ["pick", "sweep", "--trial", "0"],
        ("trials table 'sweep/trials.parquet' is not a readable Parquet file",),
        sweep_dir(trials=truncated_parquet()),
    ),
    Case(
        "pareto-trials-is-folder",
        ["pareto", "sweep"],
        ("'sweep/trials.parquet' is a folder",),
        all_of(sweep_dir(trials=None), folder("sweep/trials.parquet")),
    ),
    Case(
        "pareto-trials-lack-column",
        ["pareto", "sweep", "--all"],
        ("lacks column(s) worst_modality_auc_pgd",),
        sweep_dir(trials=TRIALS.drop(columns=["worst_modality_auc_pgd"])),
    ),
    Case(
        "pareto-binary-spec",
        ["pareto", "sweep"],
        ("the sweep's settings 'sweep/sweep.yaml' is not a text file",),
        sweep_dir(spec=GARBAGE),
    ),
    Case(
        "pick-spec-is-list",
        ["pick", "sweep", "--trial", "0"],
        ("'sweep/sweep.yaml' must hold a mapping",),
        sweep_dir(spec=b"- a\n"),
    ),
    Case("pareto-no-folder", ["pareto", "nope"], ("nope is not a sweep directory (sweep.yaml missing)",)),
    Case("pareto-dir-is-file", ["pareto", "f.txt"], ("f.txt is not a sweep directory",), put("f.txt", "x")),
    Case(
        "pareto-unfinished",
        ["pareto", "sweep"],
        ("sweep has no trials.parquet yet",),
        sweep_dir(trials=None),
    ),
    Case(
        "pick-unknown-trial",
        ["pick", "sweep", "--trial", "9", "--out", "p.yaml"],
        ("trial 9 is not in sweep; its trials: 0, 1",),
        sweep_dir(),
    ),
    Case(
        "pick-out-read-only",
        ["pick", "sweep", "--trial", "1", "--out", "ro/p.yaml"],
        ("cannot write 'ro/p.yaml' (permission denied); choose another --out",),
        all_of(sweep_dir(), folder("ro")),
        read_only("ro"),
    ),
    Case(
        "pick-out-under-a-file",
        ["pick", "sweep", "--trial", "1", "--out", "f.txt/p.yaml"],
        ("cannot write 'f.txt/p.yaml': 'f.txt' is a file, not a folder",),
        all_of(sweep_dir(), put("f.txt", "x")),
    ),
    Case(
        "pick-out-is-folder",
        ["pick", "sweep", "--trial", "1", "--out", "d"],
        ("cannot write 'd'",),
        all_of(sweep_dir(), folder("d")),
    ),
    # ---- report
    Case("report-unknown-model", ["report", "--models", "gmc,gmcc"], ("unknown model 'gmcc' (did you mean 'gmc'?)",)),
    Case("report-empty-model-name", ["report", "--models", "gmc,,dae"], ("has an empty name",)),
    Case(
        "report-config-binary",
        ["report", "--config", "c.yaml"],
        ("config file 'c.yaml' is not a text file",),
        put("c.yaml", GARBAGE),
    ),
    Case(
        "report-out-is-file",
        ["report", "--out", "f.txt"],
        ("--out 'f.txt' exists and is not a directory",),
        put("f.txt", "x"),
    ),
    Case(
        "report-out-read-only",
        ["report", *TINY_NPZ[:4], "--models", "gmc", "--no-baselines", "--seeds", "0", "--out", "ro/rep"],
        ("cannot write 'ro/rep/runs/gmc/", "config.yaml' (permission denied); choose another --out"),
        all_of(npz_data(), folder("ro")),
        read_only("ro"),
    ),
]


def snapshot(root: Path) -> dict[str, Any]:
    """Every folder (by path) and file (size, mtime, content hash) under `root`."""
    tree: dict[str, Any] = {}
    for dirpath, _, filenames in os.walk(root):
        tree[os.path.relpath(dirpath, root) + "/"] = "folder"
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            with open(path, "rb") as fh:
                digest = hashlib.sha256(fh.read()).hexdigest()
            tree[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns, digest)
    return tree


def test_the_table_is_large_and_ids_unique():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_input(case: Case, tmp_path, monkeypatch, capsys):
    root = tmp_path / "work"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("ROBUSTMM_CACHE", str(tmp_path / "cache"))
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "RAY_ADDRESS"):
        monkeypatch.setenv(name, "")  # recorded, so the teardown restores what was there
        monkeypatch.delenv(name)
    if case.setup is not None:
        case.setup(root)
    try:
        if case.patch is not None:
            case.patch(root, monkeypatch)
        before = snapshot(root)
        rc = main(case.argv)
        captured = capsys.readouterr()
        after = snapshot(root)
    finally:
        monkeypatch.undo()
        for dirpath, _, _ in os.walk(tmp_path):
            os.chmod(dirpath, 0o755)  # a read-only folder of the case, for the cleanup

    err_lines = captured.err.strip().splitlines()
    assert rc == 2, captured.err
    assert "Traceback" not in captured.err + captured.out
    assert captured.out == ""
    errors = [line for line in err_lines if "error:" in line]
    assert errors == [err_lines[-1]], captured.err  # one error line, the last
    line = err_lines[-1]
    assert line.startswith("robustmm: error: "), captured.err
    for needle in case.expect:
        assert needle in line, line
    assert all(other.startswith("[") for other in err_lines[:-1]), captured.err  # the rest is progress
    assert SECRET not in captured.err and not has_secret(captured.err)
    assert after == before


# ------------------------------------------------------------------------- the boundary itself


def test_an_os_error_at_the_boundary_is_one_line_naming_the_file(capsys):
    from robustmm.tune.command import guarded

    def full() -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "runs/x/results.parquet")

    assert guarded(full, "") == 2
    err = capsys.readouterr().err
    assert err == "robustmm: error: the disk holding 'runs/x' is full (No space left on device); " + (
        "free some space or choose another --out\n"
    )

    def denied() -> int:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/data/mhd_train.pt")

    assert guarded(denied, "") == 2
    assert capsys.readouterr().err == "robustmm: error: Permission denied: '/data/mhd_train.pt'\n"


def test_every_printed_error_is_redacted_and_folded(capsys):
    from robustmm.errors import ConfigError
    from robustmm.tune.command import guarded

    def leaky() -> int:
        raise ConfigError(f"cannot open http://user:{SECRET}@host:5000/api\n  Caused by: postgresql://a:{SECRET}@db/x")

    assert guarded(leaky, "") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and SECRET not in err and not has_secret(err)
    assert err.startswith("robustmm: error: cannot open http://***@host:5000/api Caused by: postgresql://***@db/x")


def test_a_reachable_server_keeps_its_credentials_out_of_the_uri(tmp_path, monkeypatch):
    import socket

    from robustmm.tracking import open_tracking_uri

    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        uri = open_tracking_uri(f"http://me:p%40{SECRET}@127.0.0.1:{port}/", tmp_path)
    assert uri == f"http://127.0.0.1:{port}/"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "me"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == f"p@{SECRET}"
