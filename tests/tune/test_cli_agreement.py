"""Where two parts of the command line must agree: a sweep script's --help shows its docstring's
examples one per line, `robustmm sweep SPACE` takes exactly the script's flags (-v included, on
either side of the subcommand), `pareto --all` shows the front's cells, and a CUDA device asked
for without one names the flag that fixes it."""

from __future__ import annotations

import argparse
import ast
import runpy
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from robustmm.cli import main, parser
from robustmm.tune.command import Parser, add_sweep_flags

from sweep_helpers import REPO, tiny_sweep

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


def _flags(p: argparse.ArgumentParser) -> set[str]:
    return {s for a in p._actions for s in a.option_strings if s not in ("-h", "--help")}


def _subcommand(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def test_robustmm_sweep_takes_the_flags_of_a_sweep_script():
    script = Parser()
    add_sweep_flags(script)
    assert _flags(_subcommand("sweep")) == _flags(script)
    assert {"-v", "--verbose", "--smoke", "--address"} <= _flags(script)


@pytest.mark.parametrize(
    "argv, verbose",
    [
        (["sweep", "space.yaml"], False),
        (["sweep", "space.yaml", "-v"], True),
        (["sweep", "space.yaml", "--verbose"], True),
        (["-v", "sweep", "space.yaml"], True),
    ],
)
def test_sweep_verbose_on_either_side_of_the_subcommand(argv, verbose):
    assert parser().parse_args(argv).verbose is verbose


def test_sweep_dash_v_reaches_the_sweep(tmp_path, capsys, monkeypatch):
    """`robustmm sweep SPACE -v` reaches the sweep with -v on (the sweep itself is stubbed out)."""
    seen = {}

    def run_from_args(space, args):
        seen["verbose"] = args.verbose
        return 0

    monkeypatch.setattr("robustmm.tune.command.run_from_args", run_from_args)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(tiny_sweep()))
    assert main(["sweep", str(space), "-v"]) == 0
    assert seen == {"verbose": True}
    assert capsys.readouterr().err == ""


def _finished_sweep(path: Path) -> Path:
    path.mkdir()
    (path / "sweep.yaml").write_text(yaml.safe_dump(tiny_sweep(), sort_keys=False))
    trials = pd.DataFrame(
        {
            "trial": [0, 1, 2],
            "status": ["complete", "complete", "pruned"],
            "clean_accuracy": [0.9, 0.8125, 0.95],
            "worst_modality_auc_pgd": [0.3, 0.5, 0.6],
            "param.model.tau": [0.1, 0.25, 0.4],
        }
    )
    trials.to_parquet(path / "trials.parquet", index=False)
    return path


def test_pareto_all_shows_the_cells_of_the_front(tmp_path, capsys):
    sweep = _finished_sweep(tmp_path / "sweep")
    assert main(["pareto", str(sweep)]) == 0
    front = {}
    for line in capsys.readouterr().out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0].isdigit():
            front[cells[0]] = cells[1:]
    assert front["1"] == ["81.25%", "50.00%", "0.25"]  # the front shows percent
    assert main(["pareto", str(sweep), "--all"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    for trial, cells in front.items():
        assert rows[trial][3:] == cells, rows[trial]  # after trial, status, pareto rank: the front's cells
    assert rows["2"] == ["2", "pruned", "0", "95.00%", "60.00%", "0.4"]


def test_cuda_asked_for_without_one_names_the_device_flag(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CI", "true")
    out = tmp_path / "run"
    assert main(["run", "--device", "cuda", "--out", str(out)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(
        "robustmm: error: device 'cuda' asked for but no CUDA device is available; use --device cpu or --device auto"
    ), last
    assert not out.exists()
