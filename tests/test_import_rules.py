"""DESIGN.md's one-way imports, checked with import-linter on the contracts in pyproject.toml.

import-linter configures logging with `dictConfig`, which disables every logger that exists in
the process (the project's and the libraries'), so it runs in a child process: the tests after
this one still see their log records.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = (
    "import sys; from importlinter.cli import lint_imports; "
    "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True))"
)


def test_import_contracts_hold():
    config = str(ROOT / "pyproject.toml")
    done = subprocess.run([sys.executable, "-c", LINT, config], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
