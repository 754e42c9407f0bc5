"""`robustmm report`: every model × seed once, cached and reused, then the thesis tables and plots."""

from __future__ import annotations

import contextlib
import io
import math
import re
import shutil

import pandas as pd
import pytest
import yaml
from result_rows import result_row

from robustmm import config as C
from robustmm import report as R
from robustmm.cli import main
from robustmm.errors import ConfigError
from robustmm.models import MODELS
from robustmm.results import COLUMNS, to_frame

PNG = b"\x89PNG\r\n\x1a\n"
GRID = (
    "eval.grid=[{attack: missing, targets: each}, {attack: gaussian, sigma: 0.5}, {attack: fgsm, eps: [0.1, 0.2]},"
    " {attack: bim, eps: 0.1, alpha: [0.02, 0.04], steps: 2}]"
)
SMALL = [
    "--epochs",
    "1",
    "--classifier-epochs",
    "1",
    "--max-samples",
    "30",
    *("--set", "dataset.n_train=200", "--set", "dataset.n_test=60"),
    *("--set", "train.batch_size=100", "--set", "classifier.batch_size=100"),
    *("--set", "model.head_hidden=32", "--set", "model.common_dim=16", "--set", "model.latent_dim=16"),
]
TINY = [*SMALL, "--set", GRID]  # a tiny grid with two step sizes at one ε, like the thesis' BIM and PGD
ARGS = ["report", "--models", "gmc,gmcwd", "--seeds", "0-1", *TINY, "--no-baselines"]
BASELINES = ["raw-linear-image", "raw-linear-trajectory", "raw-linear-all", "raw-mlp-all"]
SECTIONS = {
    "clean_missing": "## Clean and missing modality",
    "gaussian": "## Gaussian noise",
    "fgsm": "## FGSM (L∞)",
    "bim": "## BIM (L∞), K=2",
    "gaussian_worst": "## Gaussian noise: worst case",
    "linf_worst": "## Worst case, L∞ (FGSM, BIM)",
}


@pytest.fixture(scope="module", autouse=True)
def _env(tmp_path_factory):
    """One data cache for the module: the synthetic data are generated once, not per test."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROBUSTMM_CACHE", str(tmp_path_factory.mktemp("cache")))
        mp.setenv("CI", "true")
        yield


def _main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "out"
    code, stdout, stderr = _main([*ARGS, "--out", str(out)])
    assert code == 0, stderr
    return out, stdout, stderr


def _section(md: str, title: str) -> list[str]:
    """The body rows of the markdown table under `title`."""
    part = md.split(title + "\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in part.strip().splitlines() if line.startswith("|")][2:]


def test_report_writes_results_tables_and_plots(first):
    out, stdout, stderr = first
    assert "model 1/2 gmc, seed 0: training" in stderr and "model 2/2 gmcwd, seed 1: training" in stderr

    df = pd.read_parquet(out / "results.parquet")
    assert list(df.columns) == list(COLUMNS)
    assert set(zip(df["model"], df["seed"], strict=True)) == {(m, s) for m in ("gmc", "gmcwd") for s in (0, 1)}
    assert set(df["n"]) == {30} and set(df["split"]) == {"test"}
    summary = pd.read_parquet(out / "summary.parquet")
    assert {"mean", "std", "seeds"} <= set(summary.columns) and set(summary["seeds"]) == {2}
    assert len(summary) == len(df) // 2

    md = (out / "report.md").read_text()
    assert md.startswith("# Robustness report")
    assert "- split: **test** (hyperparameters are chosen on validation)" in md
    assert ", 30 test samples evaluated per cell" in md
    assert "- dataset: synth-mhd (n_train=200, n_test=60)" in md and "- seeds: 0, 1 (2)" in md
    assert "- epochs: 1 representation, 1 classifier" in md
    assert "- command: `robustmm report --models gmc,gmcwd --seeds 0-1 --epochs 1" in md
    assert "## Clean and missing modality" in stdout
    for key, title in SECTIONS.items():
        rows = _section(md, title)
        per_target = 1 if key == "clean_missing" else 2
        assert len(rows) == 2 * per_target, (title, rows)
        for model in ("gmc", "gmcwd"):
            assert sum(f"| {model} |" in r for r in rows) == per_target
            assert all(re.search(r"\d+\.\d\d ± \d+\.\d\d", r) for r in rows)

    tables = {p.stem: pd.read_parquet(p) for p in (out / "tables").glob("*.parquet")}
    assert set(tables) == set(SECTIONS)
    assert list(tables["clean_missing"].columns[:3]) == ["model", "clean mean", "clean std"]
    assert list(tables["clean_missing"]["model"]) == ["gmc", "gmcwd"]
    assert list(tables["fgsm"].columns) == ["target", "model", "ε=0.1 mean", "ε=0.1 std", "ε=0.2 mean", "ε=0.2 std"]
    assert list(tables["bim"].columns[2:4]) == ["ε=0.1, α=0.02 mean", "ε=0.1, α=0.02 std"]
    assert len(tables["bim"]) == 4 and tables["bim"].iloc[:, 2:].notna().all().all()

    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert plots == [f"{a}_{t}.png" for a in ("bim", "fgsm", "gaussian") for t in ("image", "trajectory")]
    assert all((out / "plots" / p).read_bytes()[:8] == PNG for p in plots)


def test_report_on_validation(tmp_path):
    out = tmp_path / "val"
    code, _, stderr = _main(
        ["report", "--models", "gmc", "--seeds", "0", "--split", "validation", *TINY, "--out", str(out)]
    )
    assert code == 0, stderr
    df = pd.read_parquet(out / "results.parquet")
    assert set(df["split"]) == {"validation"} and set(df["n"]) == {20}  # 10 % of the 200 train samples
    md = (out / "report.md").read_text()
    assert "- split: **validation**" in md and "20 validation samples evaluated per cell" in md
    assert "Accuracy (%) on the validation split" in md


def test_cache_layout_and_config_round_trip(first):
    out = first[0]
    for model in ("gmc", "gmcwd"):
        (folder,) = (out / "runs" / model).iterdir()
        assert re.fullmatch(r"[0-9a-f]{12}", folder.name)
        assert {p.name for p in folder.iterdir()} >= {"config.yaml", "seed_0.parquet", "seed_1.parquet"}
        raw = yaml.safe_load((folder / "config.yaml").read_text())
        assert "seeds" not in raw and raw["model"]["name"] == model
        # the key is the hash of what config.yaml says: `robustmm run --config` re-runs the same thing
        assert R.config_key(R.resolved_config(C.from_dict(raw))) == folder.name


def test_second_run_reuses_every_result(first, monkeypatch):
    out = first[0]
    before = pd.read_parquet(out / "results.parquet")

    def no_training(*args, **kwargs):
        raise AssertionError("a finished (model, seed) was trained again")

    monkeypatch.setattr(R, "run_seed", no_training)
    code, _, stderr = _main([*ARGS, "--out", str(out)])
    assert code == 0, stderr
    assert stderr.count(": reusing ") == 4 and "model 2/2 gmcwd, seed 1: reusing" in stderr
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), before)


def test_changed_epochs_trains_anew_beside_the_old_results(first, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(first[0], out)
    args = ["report", "--models", "gmc", "--seeds", "0", *TINY, "--epochs", "2", "--no-baselines", "--out", str(out)]
    code, _, stderr = _main(args)
    assert code == 0, stderr
    assert "model 1/1 gmc, seed 0: training" in stderr and "reusing" not in stderr
    assert len(list((out / "runs" / "gmc").iterdir())) == 2
    df = pd.read_parquet(out / "results.parquet")
    assert set(df["model"]) == {"gmc"} and set(df["seed"]) == {0}
    assert "- epochs: 2 representation" in (out / "report.md").read_text()
    # this report has no gmcwd and the same sections, so no plot or table is left over
    assert len(list((out / "plots").glob("*.png"))) == 6


def test_killed_report_keeps_finished_seeds(tmp_path, monkeypatch):
    out = tmp_path / "out"
    real, calls = R.run_seed, []

    def interrupted_at_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(R, "run_seed", interrupted_at_second)
    args = ["report", "--models", "gmc", "--seeds", "0-1", *TINY, "--epochs", "0", "--out", str(out)]
    code, _, stderr = _main(args)
    assert code == 130 and "the same command reuses them" in stderr
    (folder,) = (out / "runs" / "gmc").iterdir()
    assert (folder / "seed_0.parquet").is_file() and not (folder / "seed_1.parquet").exists()
    monkeypatch.setattr(R, "run_seed", real)
    code, _, stderr = _main(args)
    assert code == 0 and "gmc, seed 0: reusing" in stderr and "gmc, seed 1: training" in stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "gmc,gmcwdd"], "unknown model 'gmcwdd' (did you mean 'gmcwd'?)"),
        (["--seeds", "3-1"], "seeds '3-1' not understood"),
        (["--set", "model.nope=1"], "none of the selected models (gmc, gmcwd) has option 'nope'"),
        (["--set", "train.nope=1"], "train has no key 'nope'"),
        (["--set", "dataset.n_tran=5"], "has no option 'n_tran'"),
        (["--grid", "thesys"], "unknown grid 'thesys'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(args, message, tmp_path):
    out = tmp_path / "out"
    code, _, stderr = _main(["report", "--models", "gmc,gmcwd", *SMALL, *args, "--out", str(out)])
    assert code == 2
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("robustmm: error: ") and message in last
    assert not out.exists()


def test_out_that_is_a_file_is_refused(tmp_path):
    out = tmp_path / "taken"
    out.write_text("mine")
    code, _, stderr = _main(["report", "--models", "gmc", *TINY, "--out", str(out)])
    assert code == 2 and "exists and is not a directory" in stderr and out.read_text() == "mine"


def test_model_options_go_to_the_models_that_have_them(tmp_path):
    plain = R.plan_report({}, "gmc,gmcwd", [], tmp_path)
    plan = R.plan_report({}, "gmc,gmcwd", ["model.noise_sigma=0.3", "model.recon_weights.image=0.4"], tmp_path)
    gmc, gmcwd = plan.runs
    assert dict(gmc.config.model_options) == {}
    assert dict(gmcwd.config.model_options) == {"noise_sigma": 0.3, "recon_weights": {"image": 0.4}}
    assert gmc.key == plain.runs[0].key and gmcwd.key != plain.runs[1].key
    assert any("applies to gmcwd" in n for n in plan.notes)
    # an option set to its default is the same config: same key, results reused
    assert R.plan_report({}, "gmc", ["model.tau=0.1"], tmp_path).runs[0].key == plain.runs[0].key
    # a --config file's model options follow the same rule
    from_file = R.plan_report({"model": {"name": "gmc", "noise_sigma": 0.3}}, "gmc,gmcwd", [], tmp_path)
    assert dict(from_file.runs[1].config.model_options) == {"noise_sigma": 0.3}
    with pytest.raises(ConfigError, match="none of the selected models \\(gmc\\) has option 'noise_sigma'"):
        R.plan_report({}, "gmc", ["model.noise_sigma=0.3"], tmp_path)
    everything = [r.model for r in R.plan_report({}, "all", [], tmp_path).runs]
    assert sorted(everything) == [m for m in MODELS.names() if m != "raw"]  # the probe comes as the baselines
    assert everything[:2] == ["dae", "vae"] and everything[7:11] == [
        "gmc",
        "gmcwd",
        "dgmc",
        "rgmc",
    ]  # the thesis' order
    assert everything[11:] == ["jt", "ojt", "crmt-jt", "crmt-at", "crmt-mix"]  # then seed 001's
    assert R.plan_report({}, "gmc", [], tmp_path).seeds == tuple(range(10))


def _row(model, seed, pert, target, acc, eps=math.nan, alpha=math.nan, sigma=math.nan, steps=math.nan):
    return result_row(model, seed, pert, target, acc, eps=eps, alpha=alpha, sigma=sigma, steps=steps)


def test_attack_variant_rows_sit_next_to_their_model(tmp_path):
    rows = []
    for s in (0, 1):
        for m, clean in (("gmc", 0.9 + 0.02 * s), ("gmcwd", 0.95)):
            rows += [_row(m, s, "clean", "none", clean), _row(m, s, "missing", "image", 0.5)]
            rows += [_row(m, s, "bim", "image", 0.6 - a - 0.1 * s, eps=0.1, alpha=a, steps=10) for a in (0.02, 0.04)]
        rows += [_row("gmc[o-detached]", s, "bim", "image", 0.7, eps=0.1, alpha=a, steps=10) for a in (0.02, 0.04)]
    df = to_frame(rows[::-1])  # the variant's rows come first: the order still follows the models
    out = tmp_path / "out"
    (out / "plots").mkdir(parents=True)
    (out / "plots" / "fgsm_image.png").write_bytes(PNG)  # from an earlier report over another grid
    files = R.write_report(R.plan_report({}, "gmc,gmcwd", [], out), df)

    md = files.report.read_text()
    assert [r.split(" | ")[1] for r in _section(md, "## BIM (L∞), K=10")] == ["gmc", "gmc[o-detached]", "gmcwd"]
    assert [r.split(" | ")[0] for r in _section(md, "## Clean and missing modality")] == ["| gmc", "| gmcwd"]
    bim = pd.read_parquet(out / "tables" / "bim.parquet")
    assert list(bim["model"]) == ["gmc", "gmc[o-detached]", "gmcwd"]

    x, several, curves = R.curve(df, "bim", "image")
    assert x == "eps" and several and list(curves) == ["gmc", "gmc[o-detached]", "gmcwd"]
    gmc = curves["gmc"].set_index("x")
    # sample std (ddof=1) of 0.90 and 0.92
    assert gmc.loc[0.0, "mean"] == pytest.approx(0.91) and gmc.loc[0.0, "std"] == pytest.approx(0.02 / math.sqrt(2))
    assert gmc.loc[0.1, "mean"] == pytest.approx(0.51)  # per seed the worst α (0.56, 0.46), then the mean
    assert curves["gmc[o-detached]"].set_index("x").loc[0.0, "mean"] == pytest.approx(0.91)  # its model's clean
    assert [p.name for p in files.plots] == ["bim_image.png"]
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["bim_image.png"]


def test_rising_curves_are_flagged_beside_per_cell_and_worst_case_tables(tmp_path):
    """PGD on the image rises from ε=.2 to .3 (gradient masking): flagged, and the worst case keeps the
    lower value; a rise of 0.4 pp (under the 0.5 pp tolerance) and a falling curve are not flagged."""
    rows = []
    for s in (0, 1):
        rows += [_row(m, s, "clean", "none", 0.9) for m in ("gmc", "gmcwd")]
        for e, acc in ((0.1, 0.13), (0.2, 0.07), (0.3, 0.41)):
            rows.append(_row("gmc", s, "pgd", "image", acc, eps=e, alpha=e / 4, steps=10))
        for e, acc in ((0.1, 0.5), (0.2, 0.3), (0.3, 0.304)):
            rows.append(_row("gmcwd", s, "pgd", "image", acc, eps=e, alpha=e / 4, steps=10))
        rows += [
            _row(m, s, "pgd", "trajectory", 0.8 - e, eps=e, alpha=e / 4, steps=10)
            for m in ("gmc", "gmcwd")
            for e in (0.1, 0.3)
        ]
    df = to_frame(rows)
    files = R.write_report(R.plan_report({}, "gmc,gmcwd", [], tmp_path / "out"), df)
    md = files.report.read_text()

    pgd = md.split("## PGD (L∞), K=10\n", 1)[1].split("\n## ", 1)[0]
    warning = pgd.split("\n|", 1)[0]
    assert "possible gradient masking" in warning
    assert "image / gmc: 7.00 % at ε=0.2, 41.00 % at ε=0.3" in warning
    assert "gmcwd" not in warning and "trajectory" not in warning
    assert "| image | gmc | 13.00 ± 0.00 | 7.00 ± 0.00 | 41.00 ± 0.00 |" in pgd  # the per-cell numbers stay

    worst = _section(md, "## Worst case, L∞ (PGD)")
    assert "| image | gmc | 13.00 ± 0.00 | 7.00 ± 0.00 | 7.00 ± 0.00 |" in worst  # no masks: the running min
    assert "| image | gmcwd | 50.00 ± 0.00 | 30.00 ± 0.00 | 30.00 ± 0.00 |" in worst
    table = pd.read_parquet(tmp_path / "out" / "tables" / "linf_worst.parquet")
    assert list(table.columns[2:4]) == ["ε=0.1 mean", "ε=0.1 std"]
    assert R.summarise(df)["worst_mean"].notna().all()

    single = to_frame([r for r in rows if r["seed"] == 0])
    assert "7.00 ± – | 41.00 ± –" in R.summary_markdown(single)  # one seed: no std


@pytest.mark.slow  # trains every registered model
def test_all_eleven_models_in_one_report(tmp_path):
    """The thesis protocol on a short budget: every registered model, one seed, every table."""
    args = [*TINY, "--set", "model.reference_epochs=1", "--set", "model.reference_classifier_epochs=1"]
    code, stdout, stderr = _main(["report", "--models", "all", "--seeds", "0", *args, "--out", str(tmp_path / "o")])
    assert code == 0, stderr
    df = pd.read_parquet(tmp_path / "o" / "results.parquet")
    models = [m for m in MODELS.names() if m != "raw"] + BASELINES
    assert set(models) <= set(df["model"]) and "rgmc[o-detached]" in set(df["model"])
    clean_table = stdout.split(SECTIONS["clean_missing"])[1].split("##")[0]
    for name in models:
        assert f"| {name} |" in clean_table, name


def test_raw_input_baselines_sit_after_the_models_by_default(tmp_path):
    out = tmp_path / "out"
    code, stdout, stderr = _main(["report", "--models", "gmc", "--seeds", "0", *TINY, "--out", str(out)])
    assert code == 0, stderr
    assert "model 5/5 raw-mlp-all, seed 0: training" in stderr
    df = pd.read_parquet(out / "results.parquet")
    assert list(dict.fromkeys(df["model"])) == ["gmc", *BASELINES]
    md = (out / "report.md").read_text()
    assert "- models: gmc\n" in md and "- baselines (raw inputs, the classifier's budget: 1 epochs, lr 0.001): " in md
    assert [r.split(" | ")[0] for r in _section(md, SECTIONS["clean_missing"])] == [
        f"| {m}" for m in ["gmc", *BASELINES]
    ]
    assert [r.split(" | ")[1] for r in _section(md, SECTIONS["fgsm"])] == 2 * ["gmc", *BASELINES]
    (folder,) = (out / "runs" / "raw-linear-image").iterdir()
    raw = yaml.safe_load((folder / "config.yaml").read_text())
    assert raw["model"] == {"name": "raw", "modalities": ["image"], "hidden": []} and raw["train"]["epochs"] == 0
    assert R.config_key(R.resolved_config(C.from_dict(raw))) == folder.name

    def acc(model, pert, target):
        return df[(df["model"] == model) & (df["perturbation"] == pert) & (df["target"] == target)]["accuracy"]

    clean = acc("raw-linear-image", "clean", "none").iloc[0]
    # the trajectory never reaches the image probe: attacking or dropping it changes nothing
    assert set(acc("raw-linear-image", "fgsm", "trajectory")) == {clean}
    assert set(acc("raw-linear-image", "missing", "trajectory")) == {clean}

    # another representation budget retrains the model, not the baselines (they have no such stage)
    code, _, stderr = _main(["report", "--models", "gmc", "--seeds", "0", *TINY, "--epochs", "2", "--out", str(out)])
    assert code == 0, stderr
    assert "model 1/5 gmc, seed 0: training" in stderr and stderr.count(": reusing ") == 4

    code, _, stderr = _main(["report", "--models", "gmc", "--seeds", "0", *TINY, "--no-baselines", "--out", str(out)])
    assert code == 0, stderr
    assert set(pd.read_parquet(out / "results.parquet")["model"]) == {"gmc"}
    assert "raw-" not in (out / "report.md").read_text()
