from __future__ import annotations

import math

import pandas as pd
import pytest
from result_rows import result_row

from robustmm.errors import DataError
from robustmm.results import COLUMNS, read_parquet, summarise, summary_markdown, to_frame, write_parquet

NAN = math.nan


def row(seed, pert, target, acc, eps=NAN, alpha=NAN, sigma=NAN, steps=NAN, model="gmcwd"):
    return result_row(model, seed, pert, target, acc, eps=eps, alpha=alpha, sigma=sigma, steps=steps)


ROWS = [
    *(row(s, "clean", "none", 0.98 + 0.01 * s) for s in (0, 1)),
    *(row(s, "missing", "image", 0.90) for s in (0, 1)),
    *(row(s, "missing", "trajectory", 0.80) for s in (0, 1)),
    *(row(s, "fgsm", "image", 0.7 - 0.1 * s, eps=0.1) for s in (0, 1)),
    *(row(s, "fgsm", "image", 0.4, eps=0.2) for s in (0, 1)),
    *(row(s, "pgd", "trajectory", 0.3, eps=0.1, alpha=0.01, steps=10) for s in (0, 1)),
]


def test_parquet_round_trip_keeps_schema(tmp_path):
    df = to_frame(ROWS)
    path = write_parquet(df, tmp_path / "r" / "results.parquet")
    back = read_parquet(path)
    assert list(back.columns) == list(COLUMNS)
    assert {c: str(t) for c, t in back.dtypes.items()} == {
        c: ("string" if t == "string" else t) for c, t in COLUMNS.items()
    }
    pd.testing.assert_frame_equal(back, df)
    assert not list(tmp_path.glob("r/.*tmp"))


def test_missing_column_and_file_errors(tmp_path):
    with pytest.raises(DataError, match="lack column"):
        to_frame([{"model": "x"}])
    with pytest.raises(DataError, match="no results file"):
        read_parquet(tmp_path / "none.parquet")


def test_mean_std_over_seeds():
    s = summarise(to_frame(ROWS))
    clean = s[s["perturbation"] == "clean"].iloc[0]
    # sample std (ddof=1): 0.98 and 0.99 -> 0.005 * sqrt(2)
    assert clean["mean"] == pytest.approx(0.985) and clean["std"] == pytest.approx(0.00707107) and clean["seeds"] == 2
    fgsm = s[(s["perturbation"] == "fgsm") & (s["eps"] == 0.1)].iloc[0]
    assert fgsm["mean"] == pytest.approx(0.65) and fgsm["std"] == pytest.approx(0.0707107)
    one = summarise(to_frame([r for r in ROWS if r["seed"] == 0]))
    assert one["std"].isna().all() and (one["seeds"] == 1).all()  # one seed: no sample std


def test_split_column_old_rows_and_no_mixed_tables():
    df = to_frame(ROWS)  # rows from before the split column: they were all on test
    assert list(COLUMNS)[:3] == ["model", "dataset", "split"] and set(df["split"]) == {"test"}
    assert summary_markdown(df).startswith("Accuracy (%) on the test split")
    val = to_frame([{**r, "split": "validation"} for r in ROWS])
    assert summary_markdown(val).startswith("Accuracy (%) on the validation split")
    assert set(summarise(val)["split"]) == {"validation"}
    with pytest.raises(DataError, match="the results mix the splits test, validation; a table states one split"):
        summary_markdown(pd.concat([df, val], ignore_index=True))


def test_markdown_tables_in_thesis_layout():
    md = summary_markdown(to_frame(ROWS))
    assert "## Clean and missing modality" in md
    assert "| model | clean | image missing | trajectory missing |" in md
    assert "| gmcwd | 98.50 ± 0.71 | 90.00 ± 0.00 | 80.00 ± 0.00 |" in md
    assert "## FGSM (L∞)" in md and "| target | model | ε=0.1 | ε=0.2 |" in md
    assert "| image | gmcwd | 65.00 ± 7.07 | 40.00 ± 0.00 |" in md
    assert "sample std (ddof=1)" in md
    one = summary_markdown(to_frame([r for r in ROWS if r["seed"] == 0]))
    assert "| gmcwd | 98.00 ± – | 90.00 ± 0.00 |" not in one and "| gmcwd | 98.00 ± – | 90.00 ± – |" in one
    assert "## PGD (L∞), K=10" in md and "ε=0.1, α=0.01" in md
