"""Where two parts of the command line must agree: a sweep script's --help shows its docstring's
examples one per line, `robustmm sweep SPACE` takes exactly the script's flags (-v included, on
either side of the subcommand), `pareto --all` shows the front's cells, and a CUDA device asked
for without one names the flag that fixes it."""

from __future__ import annotations

import ast
import runpy
import sys

import pytest

from sweep_helpers import REPO

SCRIPTS = sorted((REPO / "sweeps").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_a_sweep_scripts_help_keeps_its_examples_one_per_line(script, capsys, monkeypatch):
    doc = ast.get_docstring(ast.parse(script.read_text()), clean=False) or ""
    examples = [line.rstrip() for line in doc.splitlines() if line.strip().startswith(("python ", "ray "))]
    assert len(examples) >= 2, doc
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    with pytest.raises(SystemExit) as info:
        runpy.run_path(str(script), run_name="__main__")
    assert info.value.code == 0
    shown = capsys.readouterr().out.splitlines()
    for example in examples:
        assert example in shown, "\n".join(shown)
