"""The command line as a user meets it: list, run end to end, and one-line errors (exit 2)."""

from __future__ import annotations

import pandas as pd
import pytest

from robustmm.cli import main
from robustmm.results import COLUMNS

TINY = [
    "--set",
    "dataset.n_train=400",
    "--set",
    "dataset.n_test=100",
    "--set",
    "train.batch_size=100",
    "--set",
    "classifier.batch_size=100",
    "--set",
    "model.head_hidden=32",
]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTMM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CI", "true")


@pytest.mark.parametrize(
    "what, expect", [("models", "gmcwd"), ("datasets", "synth-mhd"), ("attacks", "pgd_l2"), ("grids", "thesis")]
)
def test_list(what, expect, capsys):
    assert main(["list", what]) == 0
    assert expect in capsys.readouterr().out


def test_run_writes_parquet_summary_and_config(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "run",
            "--model",
            "gmcwd",
            "--dataset",
            "synth-mhd",
            "--grid",
            "smoke",
            "--seeds",
            "0-1",
            "--epochs",
            "1",
            "--classifier-epochs",
            "1",
            "--out",
            str(out),
            *TINY,
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert "## Clean and missing modality" in captured.out
    assert "seed 1 representation epoch 1" in captured.err and "evaluating" in captured.err
    df = pd.read_parquet(out / "results.parquet")
    assert list(df.columns) == list(COLUMNS)
    assert set(df["split"]) == {"test"} and set(df["n"]) == {100}
    assert "360 train / 40 validation / 100 test" in captured.err and "evaluated on test" in captured.err
    assert sorted(df["seed"].unique()) == [0, 1]
    assert set(df["perturbation"]) == {"clean", "missing", "gaussian", "fgsm", "pgd"}
    assert set(df["target"]) == {"none", "image", "trajectory"}
    assert (out / "summary.md").read_text().startswith("Accuracy (%) on the test split")
    # the written config re-runs the same thing: same seed, same CPU -> same numbers
    again = tmp_path / "again"
    assert main(["run", "--config", str(out / "config.yaml"), "--seeds", "1", "--out", str(again)]) == 0
    first = df[df["seed"] == 1].reset_index(drop=True)
    pd.testing.assert_frame_equal(pd.read_parquet(again / "results.parquet"), first)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "gmcwdd"], "unknown model 'gmcwdd' (did you mean 'gmcwd'?)"),
        (["--dataset", "mhd", "--data-dir", "nowhere"], "--data-dir 'nowhere' is not a directory"),
        (["--grid", "thesys"], "unknown grid 'thesys'"),
        (["--seeds", "3-1"], "seeds '3-1' not understood"),
        (["--epochs", "-2"], "train.epochs must be ≥ 0, got -2"),
        (["--set", "eval.grid=[{attack: fgsm, eps: -0.1}]"], "eps=-0.1 is invalid"),
        (["--set", "model.tau=0"], "model.tau must be > 0"),
        (["--set", "dataset.n_tran=5"], "has no option 'n_tran'"),
        (["--set", "eval.split=train"], "eval.split 'train' unknown; evaluate on one of test, validation"),
        (["--set", "dataset.validation_fraction=0"], "validation_fraction must be a number strictly between 0 and 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--out", str(out), *TINY, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("robustmm: error: ") and message in err[-1]
    assert not (out / "results.parquet").exists()


def test_run_on_validation(tmp_path, capsys):
    out = tmp_path / "val"
    args = ["run", "--model", "gmc", "--epochs", "1", "--classifier-epochs", "1", "--split", "validation"]
    assert main([*args, "--out", str(out), *TINY, "--set", "dataset.validation_fraction=0.25"]) == 0
    df = pd.read_parquet(out / "results.parquet")
    assert set(df["split"]) == {"validation"} and set(df["n"]) == {100}  # a quarter of the 400 train samples
    assert (out / "summary.md").read_text().startswith("Accuracy (%) on the validation split")


def test_bad_yaml_config(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: [unclosed\n")
    assert main(["run", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "is not valid YAML" in capsys.readouterr().err


def test_missing_real_data_names_the_files(tmp_path, capsys):
    assert main(["run", "--dataset", "mhd", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "mhd_train.pt" in err and "mhd_test.pt" in err
