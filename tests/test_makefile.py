"""The Makefile's targets, run by `make` against stand-in programs: `make test` runs pytest, the
import rules and ruff each even when an earlier one failed, prints one summary of all three and
fails when any failed; `make test-fast` leaves the slow tests out; the first install says what it
installs and shows pip's progress; `make demo` says that it removes an earlier runs/demo."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MAKEFILE = REPO / "Makefile"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")

# each stand-in appends its name and arguments (one per line, then a blank line) to $FAKE_LOG and
# exits with $FAKE_<NAME>_RC (0 unless set)
FAKE = """#!/bin/sh
{{ echo "{name}"; for a in "$@"; do echo "$a"; done; echo; }} >> "$FAKE_LOG"
case "$*" in *"-m pytest"*) exit "${{FAKE_PYTEST_RC:-0}}";; esac
exit "${{FAKE_{var}_RC:-0}}"
"""


def _venv(root: Path, installed: bool = True) -> Path:
    """A stand-in .venv whose python, lint-imports and ruff only log their calls."""
    venv = root / "venv"
    (venv / "bin").mkdir(parents=True)
    for name in ("python", "lint-imports", "ruff"):
        path = venv / "bin" / name
        path.write_text(FAKE.format(name=name, var=name.upper().replace("-", "_")))
        path.chmod(0o755)
    pyproject = root / "pyproject.toml"
    pyproject.write_text("")
    os.utime(pyproject, (1_600_000_000, 1_600_000_000))  # older than the stamp: nothing to install
    if installed:
        (venv / ".installed-stamp").write_text("")
    return venv


def _make(root: Path, target: str, **rcs: int) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    venv = root / "venv"
    env = dict(os.environ, FAKE_LOG=str(root / "calls.log"))
    for var in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):  # under `make test`, the outer make's overrides
        env.pop(var, None)
    env.update({f"FAKE_{k.upper()}_RC": str(v) for k, v in rcs.items()})
    python = venv / "bin" / "python"
    done = subprocess.run(
        ["make", "--no-print-directory", "-f", str(MAKEFILE), target, f"VENV={venv}", f"PYTHON={python}"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    log = root / "calls.log"
    calls = [block.splitlines() for block in log.read_text().split("\n\n") if block] if log.exists() else []
    return done, calls


def _summary(stdout: str, target: str) -> dict[str, str]:
    lines = stdout.splitlines()
    start = lines.index(f"make {target}:")
    return {line.split()[0]: line.split(None, 1)[1] for line in lines[start + 1 :] if line.strip()}


def test_make_test_runs_all_three_checks_when_the_first_fails(tmp_path):
    _venv(tmp_path)
    done, calls = _make(tmp_path, "test", pytest=1, ruff=3)
    assert done.returncode != 0
    assert [c[0] for c in calls] == ["python", "lint-imports", "ruff"]
    assert calls[0][1:] == ["-m", "pytest"]
    assert calls[2][1:] == ["check", "robustmm", "tests", "bench", "docs", "sweeps"]
    assert _summary(done.stdout, "test") == {
        "pytest": "FAILED (exit 1)",
        "lint-imports": "passed",
        "ruff": "FAILED (exit 3)",
    }


def test_make_test_fails_when_only_the_last_check_fails(tmp_path):
    _venv(tmp_path)
    done, _ = _make(tmp_path, "test", ruff=1)
    assert done.returncode != 0
    assert _summary(done.stdout, "test") == {"pytest": "passed", "lint-imports": "passed", "ruff": "FAILED (exit 1)"}


def test_make_test_passes_when_all_three_pass(tmp_path):
    _venv(tmp_path)
    done, calls = _make(tmp_path, "test")
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(calls) == 3
    assert set(_summary(done.stdout, "test").values()) == {"passed"}


def test_make_test_fast_leaves_the_slow_tests_out_and_runs_the_same_lint(tmp_path):
    _venv(tmp_path)
    done, calls = _make(tmp_path, "test-fast", lint_imports=1)
    assert done.returncode != 0
    assert calls[0][1:] == ["-m", "pytest", "-m", "not slow"]
    assert [c[0] for c in calls[1:]] == ["lint-imports", "ruff"]
    assert _summary(done.stdout, "test-fast") == {
        "pytest": "passed",
        "lint-imports": "FAILED (exit 1)",
        "ruff": "passed",
    }


def test_the_first_install_says_what_it_installs_and_shows_progress(tmp_path):
    venv = _venv(tmp_path, installed=False)
    done, calls = _make(tmp_path, "test")
    assert done.returncode == 0, done.stdout + done.stderr
    before = done.stdout.split("-m venv", 1)[0]  # said before anything is installed
    assert "torch 2.14.1" in before and "6.5 GB" in before and "CUDA" in before
    installs = [c for c in calls if c[1:4] == ["-m", "pip", "install"]]
    assert installs and all("--quiet" not in c and "-q" not in c for c in installs)
    assert all("--progress-bar" in c and c[c.index("--progress-bar") + 1] == "on" for c in installs)
    assert (venv / ".installed-stamp").exists()


def test_make_demo_says_it_removes_the_previous_demo(tmp_path):
    _venv(tmp_path)
    old = tmp_path / "runs" / "demo" / "trials.parquet"
    old.parent.mkdir(parents=True)
    old.write_text("from the last demo")
    done, calls = _make(tmp_path, "demo")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "removing the previous demo's runs/demo" in done.stdout
    assert not old.parent.exists()
    assert calls == [["python", "sweeps/gmcwd_weights.py", "--smoke", "--out", "runs/demo"]]
    again, _ = _make(tmp_path, "demo")  # nothing to remove: nothing said
    assert "removing" not in again.stdout
