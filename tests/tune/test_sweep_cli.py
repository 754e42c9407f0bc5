"""The sweep command line: `robustmm sweep|pareto|pick` and the sweeps/ scripts.

No Ray cluster and no training: every `sweep` call here must fail before Ray starts, and
`pareto`/`pick` read a sweep directory written by hand. Errors are one line on stderr
(`robustmm: error: ...`) and exit code 2.
"""

from __future__ import annotations

import math
import runpy
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from robustmm.cli import main
from robustmm.config import from_dict

from sweep_helpers import REPO, tiny_sweep, write_space

SCRIPT = REPO / "sweeps" / "gmcwd_weights.py"


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Run every command from an empty directory, so a default runs/<name> would land there."""
    monkeypatch.chdir(tmp_path)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_one_error_line(err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("robustmm: error: "), err
    for needle in needles:
        assert needle in lines[0], err
    return lines[0]


def assert_untouched(out_dir) -> None:
    assert not out_dir.exists() or not any(out_dir.iterdir()), sorted(out_dir.rglob("*"))


# -------------------------------------------------------------------------------- robustmm sweep


def test_sweep_missing_space(capsys, tmp_path):
    rc, out, err = cli(capsys, "sweep", "missing.yaml", "--out", tmp_path / "out")
    assert rc == 2
    assert_one_error_line(err, "'missing.yaml' does not exist")
    assert out == ""
    assert_untouched(tmp_path / "out")


def test_sweep_bad_space_writes_nothing(capsys, tmp_path):
    bad = tiny_sweep(space={"model.tau": {"type": "float", "low": 0.5, "high": 0.5}})
    space = write_space(tmp_path / "bad.yaml", bad)
    rc, out, err = cli(capsys, "sweep", space, "--out", tmp_path / "out")
    assert rc == 2
    assert_one_error_line(err, "space.model.tau: the range [0.5, 0.5] is empty")
    assert_untouched(tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]  # no runs/ either


def test_sweep_space_not_yaml(capsys, tmp_path):
    space = tmp_path / "broken.yaml"
    space.write_text("name: tiny\nspace: {model.tau: [\n")
    rc, _, err = cli(capsys, "sweep", space, "--out", tmp_path / "out")
    assert rc == 2
    assert_one_error_line(err, "is not valid YAML")
    assert_untouched(tmp_path / "out")


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--smoke"], "--smoke asked for, but the sweep has no smoke: section"),
        (["--num-samples", "0"], "budget.num_samples must be an integer ≥ 1, got 0"),
        (["--max-concurrent", "0"], "budget.max_concurrent must be an integer ≥ 1, got 0"),
        (["--sampler", "bayes"], "sampler 'bayes' unknown"),
        (["--sampler", "grid"], "the grid sampler needs a step"),
        (["--sampler-seed", "-1"], "sampler.seed must be an integer ≥ 0"),
        (["--gpu", "1.5"], "resources: cpu must be > 0 and gpu ≥ 0"),
        (["--cpu", "0"], "resources: cpu must be > 0"),
        (["--data-dir", "no-such-dir"], "--data-dir 'no-such-dir' is not a directory"),
        (["--set", "modle.tau=0.1"], "unknown section 'modle'"),
        (["--set", "train.lr"], "must look like section.key=value"),
        (["--set", "train.lr=-1"], "train.lr must be > 0"),
        (["--epochs", "-1"], "train.epochs must be ≥ 0"),
    ],
)
def test_sweep_bad_flags(capsys, tmp_path, flags, needle):
    space = write_space(tmp_path / "tiny.yaml", tiny_sweep())
    rc, out, err = cli(capsys, "sweep", space, "--out", tmp_path / "out", *flags)
    assert rc == 2
    assert_one_error_line(err, needle)
    assert out == ""
    assert_untouched(tmp_path / "out")


def test_sweep_refuses_an_existing_sweep_without_resume(capsys, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "sweep.json").write_text("{}")
    space = write_space(tmp_path / "tiny.yaml", tiny_sweep())
    rc, _, err = cli(capsys, "sweep", space, "--out", out_dir)
    assert rc == 2
    assert_one_error_line(err, "already holds a sweep; pass --resume")
    assert sorted(p.name for p in out_dir.iterdir()) == ["sweep.json"]


def test_sweep_resume_without_a_sweep(capsys, tmp_path):
    space = write_space(tmp_path / "tiny.yaml", tiny_sweep())
    rc, _, err = cli(capsys, "sweep", space, "--out", tmp_path / "out", "--resume")
    assert rc == 2
    assert_one_error_line(err, "--resume:", "holds no sweep to resume")
    assert_untouched(tmp_path / "out")


# ----------------------------------------------------------------------------- sweeps/ scripts


def test_script_help():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    for flag in ("--smoke", "--resume", "--tracking-uri", "--num-samples", "--out"):
        assert flag in proc.stdout
    assert "gmcwd_weights.yaml" in proc.stdout  # the docstring names its space


def run_script(monkeypatch, *argv: str) -> int:
    """`python sweeps/gmcwd_weights.py ARGV` in this process (the same code path, without the
    seconds a fresh interpreter spends importing torch and Ray)."""
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *map(str, argv)])
    with pytest.raises(SystemExit) as info:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    return info.value.code


def test_script_bad_num_samples(capsys, monkeypatch, tmp_path):
    # the cwd is an empty tmp dir: the script finds search_spaces/ beside itself
    rc = run_script(monkeypatch, "--num-samples", "0", "--out", tmp_path / "out")
    captured = capsys.readouterr()
    assert rc == 2
    assert_one_error_line(captured.err, "budget.num_samples must be an integer ≥ 1, got 0")
    assert captured.out == ""
    assert_untouched(tmp_path / "out")
    assert not (tmp_path / "runs").exists()


def test_script_bad_sampler_with_smoke(capsys, monkeypatch, tmp_path):
    rc = run_script(monkeypatch, "--smoke", "--sampler", "grid", "--out", tmp_path / "out")
    assert rc == 2
    assert_one_error_line(capsys.readouterr().err, "space.model.recon_weights.image: the grid sampler needs a step")
    assert_untouched(tmp_path / "out")


# ------------------------------------------------------------------- robustmm pareto / pick


def fake_sweep(path, trials: pd.DataFrame | None = None):
    """A finished sweep directory, by hand: sweep.yaml and trials.parquet (trial 2 was pruned with
    numbers that would dominate both complete trials, had it been ranked)."""
    path.mkdir()
    (path / "sweep.yaml").write_text(yaml.safe_dump(tiny_sweep(), sort_keys=False))
    if trials is None:
        trials = pd.DataFrame(
            {
                "trial": [0, 1, 2],
                "trial_id": ["a_00000", "a_00001", "a_00002"],
                "status": ["complete", "complete", "pruned"],
                "failure_reason": ["", "", "stopped early by ASHA"],
                "clean_accuracy": [0.90, 0.80, 0.95],
                "worst_modality_auc_pgd": [0.30, 0.50, 0.60],
                "param.model.tau": [0.1, 0.25, 0.4],
                "pareto_rank": [1, 1, 0],
            }
        )
    trials.to_parquet(path / "trials.parquet", index=False)
    return path


def table_trials(markdown: str) -> list[str]:
    """First column of the data rows of a markdown table."""
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    return [row.split("|")[1].strip() for row in rows[2:]]  # after the header and the |---| line


def test_pareto_prints_the_front(capsys, tmp_path):
    sweep = fake_sweep(tmp_path / "sweep")
    rc, out, err = cli(capsys, "pareto", sweep)
    assert rc == 0, err
    assert "Pareto front of tiny" in out
    assert table_trials(out) == ["0", "1"]  # best clean accuracy first; the pruned trial is not on it
    assert "tau" in out and "0.25" in out
    assert "2 complete trials, 2 on the front; 1 pruned, 0 failed" in out


def test_pareto_all(capsys, tmp_path):
    sweep = fake_sweep(tmp_path / "sweep")
    rc, out, _ = cli(capsys, "pareto", sweep, "--all")
    assert rc == 0
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["trial", "status", "pareto_rank"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["0", "complete", "1"],
        ["1", "complete", "1"],
        ["2", "pruned", "0"],
    ]


def test_pick_writes_a_run_config(capsys, tmp_path):
    sweep = fake_sweep(tmp_path / "sweep")
    picked = tmp_path / "picked.yaml"
    rc, out, err = cli(capsys, "pick", sweep, "--trial", 1, "--out", picked)
    assert rc == 0, err
    assert out == ""
    assert "wrote" in err
    text = picked.read_text()
    assert text.startswith("# trial 1 of the sweep")
    cfg = from_dict(yaml.safe_load(text))
    assert cfg.eval.split == "test"  # chosen on validation, the picked config states test numbers
    assert cfg.model_options["tau"] == 0.25
    assert type(cfg.model_options["tau"]) is float
    # everything else is the sweep's run config
    run = tiny_sweep()["run"]
    assert cfg.model == "gmc" and cfg.model_options["latent_dim"] == 16
    assert cfg.dataset == "synth-mhd" and cfg.dataset_options["n_train"] == 400
    assert (cfg.train.epochs, cfg.train.lr, cfg.seeds, cfg.device) == (2, 0.003, (0,), "cpu")
    assert cfg.eval.grid == run["eval"]["grid"]


def test_pick_to_stdout(capsys, tmp_path):
    sweep = fake_sweep(tmp_path / "sweep")
    rc, out, _ = cli(capsys, "pick", sweep, "--trial", 0)
    assert rc == 0
    assert from_dict(yaml.safe_load(out)).model_options["tau"] == 0.1


def test_pick_trial_without_a_sampled_value(capsys, tmp_path):
    # a conditional parameter a trial did not sample is NaN in trials.parquet: the run config's value stays
    trials = pd.DataFrame(
        {
            "trial": [0, 1],
            "status": ["complete", "complete"],
            "clean_accuracy": [0.9, 0.8],
            "worst_modality_auc_pgd": [0.3, 0.5],
            "param.model.tau": [0.1, math.nan],
        }
    )
    sweep = fake_sweep(tmp_path / "sweep", trials)
    rc, out, _ = cli(capsys, "pick", sweep, "--trial", 1)
    assert rc == 0
    assert "tau" not in from_dict(yaml.safe_load(out)).model_options


def test_pick_unknown_trial(capsys, tmp_path):
    sweep = fake_sweep(tmp_path / "sweep")
    picked = tmp_path / "picked.yaml"
    rc, out, err = cli(capsys, "pick", sweep, "--trial", 9, "--out", picked)
    assert rc == 2
    assert_one_error_line(err, "trial 9 is not in", "its trials: 0, 1, 2")
    assert out == ""
    assert not picked.exists()


@pytest.mark.parametrize("command", [["pareto"], ["pareto", "--all"], ["pick", "--trial", "0"]])
def test_not_a_sweep_directory(capsys, tmp_path, command):
    (tmp_path / "empty").mkdir()
    rc, out, err = cli(capsys, command[0], tmp_path / "empty", *command[1:])
    assert rc == 2
    assert_one_error_line(err, "is not a sweep directory (sweep.yaml missing)")
    assert out == ""


@pytest.mark.parametrize("command", [["pareto"], ["pick", "--trial", "0"]])
def test_unfinished_sweep_directory(capsys, tmp_path, command):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.yaml").write_text(yaml.safe_dump(tiny_sweep()))
    rc, _, err = cli(capsys, command[0], sweep, *command[1:])
    assert rc == 2
    assert_one_error_line(err, "has no trials.parquet yet")


def test_pareto_missing_directory(capsys, tmp_path):
    rc, _, err = cli(capsys, "pareto", tmp_path / "nope")
    assert rc == 2
    assert_one_error_line(err, "is not a sweep directory")
