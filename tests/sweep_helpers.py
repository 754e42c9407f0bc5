"""Tiny sweeps that train in seconds on synth-mhd (imported by the tests in tests/tune and tests/faults),
and the bounded waits of the tests that start a service (a Ray head, a helper process): each waits
for the thing it will use to answer, never for a proxy of it (an open port, an earlier command that
works), and gives up after a deadline with what the service said, instead of hanging."""

from __future__ import annotations

import copy
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")  # the venv's ray command


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# a grid with what the objectives need and little else: clean, missing, PGD K=2 at two eps
TINY_GRID = [
    {"attack": "missing", "targets": "each"},
    {"attack": "pgd", "targets": "each", "eps": [0.1, 0.2], "alpha": 0.05, "steps": 2},
]

TINY_SWEEP: dict[str, Any] = {
    "name": "tiny",
    "run": {
        "model": {"name": "gmc", "latent_dim": 16, "common_dim": 16, "head_hidden": 32},
        "dataset": {"name": "synth-mhd", "n_train": 400, "n_test": 100, "difficulty": 0.3},
        "train": {"epochs": 2, "batch_size": 64, "lr": 0.003},
        "classifier": {"epochs": 2, "batch_size": 64, "lr": 0.003},
        "eval": {"grid": TINY_GRID, "batched": False},
        "seeds": [0],
        "device": "cpu",
    },
    "space": {"model.tau": {"type": "float", "low": 0.05, "high": 0.5}},
    "objectives": ["clean_accuracy", {"name": "worst_modality_auc", "attack": "pgd"}],
    "sampler": {"name": "tpe", "seed": 0},
    "budget": {"num_samples": 4, "max_concurrent": 2},
    "resources": {"cpu": 1, "gpu": 0},
    "checkpoint": {"every": 1, "keep": 2},
    "failure": {"max_failures": 1},
}


def tiny_sweep(**changes: Any) -> dict[str, Any]:
    """TINY_SWEEP with top-level sections replaced (and run sections merged)."""
    out = copy.deepcopy(TINY_SWEEP)
    for k, v in changes.items():
        if k == "run":
            for section, value in v.items():
                out["run"][section] = {**out["run"].get(section, {}), **value} if isinstance(value, dict) else value
        else:
            out[k] = v
    return out


def write_space(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# the smoke GMCWD sweep, shrunk further so that a trial takes seconds (4 trials, one at a time)
SMOKE_SHRINK = [
    "--smoke",
    "--num-samples=4",
    "--max-concurrent=1",
    "--epochs=2",
    "--set=classifier.epochs=1",
    "--set=dataset.n_train=400",
    "--set=dataset.n_test=100",
    "--set=eval.grid=[{attack: pgd, targets: each, eps: [0.1, 0.2], alpha: 0.05, steps: 2}]",
]


def smoke_spec(*extra: str) -> Any:
    """The SweepSpec that `sweep_command` runs (the same flags, parsed as the sweep script does)."""
    import argparse

    from robustmm.tune.command import add_sweep_flags, find_space, overrides_from
    from robustmm.tune.space import load_sweep

    parser = argparse.ArgumentParser()
    add_sweep_flags(parser)
    args = parser.parse_args([*SMOKE_SHRINK, *extra])
    return load_sweep(find_space("gmcwd_weights.yaml"), smoke=args.smoke, overrides=overrides_from(args))


def sweep_env() -> dict[str, str]:
    """The environment of a sweep driver started by a test: no input, no cluster to join."""
    env = dict(os.environ, CI="true", PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    return env


def sweep_command(out: Path, *extra: str) -> list[str]:
    """The shrunk smoke sweep into `out`, as a command line."""
    return [sys.executable, str(REPO / "sweeps" / "gmcwd_weights.py"), *SMOKE_SHRINK, f"--out={out}", *extra]


# ------------------------------------------------------------------------- bounded waits

T = TypeVar("T")


def tail(path: Path | None, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path is not None and path.exists() else ""


def wait_until(
    probe: Callable[[], T | None],
    seconds: float,
    what: str,
    *,
    service: subprocess.Popen | None = None,
    log: Path | None = None,
    every: float = 1.0,
) -> T:
    """Call `probe` until it returns something other than None (or False), at most `seconds`; fail
    naming `what` when the time is up or `service` ended first (with the tail of its `log`)."""
    deadline = time.monotonic() + seconds
    while True:
        got = probe()
        if got is not None and got is not False:
            return got
        if service is not None and service.poll() is not None:
            pytest.fail(f"{what}: the service ended (exit {service.returncode}) first\n{tail(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds:.0f} s\n{tail(log)}")
        time.sleep(every)


def lines_of(stream: IO[str]) -> queue.Queue:
    """The lines of `stream` as they come (None at its end), read by a thread."""
    q: queue.Queue = queue.Queue()

    def read() -> None:
        for line in stream:
            q.put(line)
        q.put(None)

    threading.Thread(target=read, daemon=True).start()
    return q


def next_line(lines: queue.Queue, seconds: float, what: str, seen: list[str] | None = None) -> str:
    """The next line from `lines_of(...)`, waited for at most `seconds`; fail naming `what` when
    the stream ends or the time is up (with the lines `seen` so far)."""
    try:
        line = lines.get(timeout=seconds)
    except queue.Empty:
        pytest.fail(f"{what}: nothing within {seconds:.0f} s\n{''.join(seen or [])[-3000:]}")
    if line is None:
        pytest.fail(f"{what}: the output ended first\n{''.join(seen or [])[-3000:]}")
    return line


def first_line(proc: subprocess.Popen, seconds: float, what: str) -> str:
    """The first line `proc` prints on stdout (a helper saying that it is ready), waited for at
    most `seconds`; fail naming `what` when the time is up or `proc` ends first. Only that line is
    read here, so the caller may read the rest (`communicate`) itself."""
    assert proc.stdout is not None
    stdout = proc.stdout
    got: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: got.put(stdout.readline()), daemon=True).start()
    try:
        line = got.get(timeout=seconds)
    except queue.Empty:
        pytest.fail(f"{what}: nothing within {seconds:.0f} s")
    if not line:
        pytest.fail(f"{what}: it ended (exit {proc.wait(timeout=60)}) first")
    return line
