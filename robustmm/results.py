"""Result rows <-> pandas <-> parquet, and the thesis-style mean ± std tables.

One row per (model, dataset, split, seed, perturbation, target, parameters). Columns (`COLUMNS`):

| column       | type    | meaning                                                            |
| ------------ | ------- | ------------------------------------------------------------------ |
| model        | string  | registry name of the representation model                          |
| dataset      | string  | registry name of the dataset                                       |
| split        | string  | the split evaluated: test, or validation (a sweep's trials)        |
| seed         | int64   | run seed (initialisation, shuffling, noise, attack randomness)     |
| perturbation | string  | clean, missing, gaussian, fgsm, bim, pgd, fgm, pgd_l2              |
| target       | string  | perturbed (or missing) modalities joined by "+"; "none" for clean  |
| eps          | float64 | attack budget ε (L∞ or L2 by attack); NaN where not applicable     |
| alpha        | float64 | step size α of iterative attacks; NaN otherwise                    |
| sigma        | float64 | Gaussian noise σ; NaN otherwise                                    |
| steps        | float64 | iterations K of iterative attacks; NaN otherwise                   |
| restarts     | float64 | random restarts of PGD attacks; NaN otherwise                      |
| accuracy     | float64 | fraction of evaluated samples classified correctly, in [0, 1]      |
| worst_case_  | float64 | per-sample worst case over the attack family at every ε' ≤ ε and   |
| accuracy     |         | over attack variants (`robustmm.worst_case`); NaN on a variant's   |
|              |         | rows (folded into its model's) and on statistic rows               |
| correct      | int64   | number classified correctly                                        |
| n            | int64   | number of samples evaluated                                        |
| correct_mask | string  | which samples were correct: base64 of the packed bits              |
|              |         | (`robustmm.attacks.mask`); "" for statistic rows                   |
| value        | float64 | a statistic that is not an accuracy (rows of `STATISTICS`: mean    |
|              |         | certified radius, vulnerability η, its ratio); NaN otherwise       |

Rows written before `value` or `correct_mask` existed read back with value NaN and mask "",
rows written before `split` existed (all on test) with split "test";
`worst_case_accuracy` is derived, recomputed by `to_frame` from the rows it is given (for rows
without masks it is the upper bound `robustmm.worst_case` describes). The `certified` rows are
accuracies (correct and certified at radius ε); the `STATISTICS` rows have accuracy NaN.

Tables give mean ± sample standard deviation (ddof=1) over seeds; with one seed the std is NaN
and printed as "–".
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from robustmm.attacks.grid import STATISTICS
from robustmm.errors import DataError
from robustmm.files import new_folders, writing
from robustmm.files import read_parquet as read_parquet_file
from robustmm.models.base import base_label
from robustmm.worst_case import NESTED, family, worst_case_accuracy

COLUMNS: dict[str, str] = {
    "model": "string",
    "dataset": "string",
    "split": "string",
    "seed": "int64",
    "perturbation": "string",
    "target": "string",
    "eps": "float64",
    "alpha": "float64",
    "sigma": "float64",
    "steps": "float64",
    "restarts": "float64",
    "accuracy": "float64",
    "worst_case_accuracy": "float64",
    "correct": "int64",
    "n": "int64",
    "correct_mask": "string",
    "value": "float64",
}
OPTIONAL = {  # columns older rows may lack, with the value they read back as
    "split": "test",
    "value": math.nan,
    "correct_mask": "",
    "worst_case_accuracy": math.nan,
}
PARAMS = ("eps", "alpha", "sigma", "steps", "restarts")
CELL_KEYS = ("perturbation", "target", *PARAMS)
ATTACK_ORDER = ("gaussian", "fgsm", "bim", "pgd", "fgm", "pgd_l2", "certified")
TITLES = {
    "gaussian": "Gaussian noise",
    "fgsm": "FGSM (L∞)",
    "bim": "BIM (L∞)",
    "pgd": "PGD (L∞)",
    "fgm": "FGM (L2)",
    "pgd_l2": "PGD (L2)",
    "certified": "Certified accuracy (L2 radius ε)",
}


def to_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows -> a frame with exactly `COLUMNS`, in order and typed, `worst_case_accuracy` computed
    from these rows; a missing column is an error."""
    df = pd.DataFrame(list(rows))
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in COLUMNS.items()})
    for c, default in OPTIONAL.items():
        if c not in df.columns:
            df[c] = default
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"result rows lack column(s) {', '.join(missing)}")
    df = df[list(COLUMNS)].astype(COLUMNS)
    df["correct_mask"] = df["correct_mask"].fillna("")
    df["worst_case_accuracy"] = worst_case_accuracy(df)
    return df


def write_atomic(path: str | Path, write: Callable[[str], None]) -> Path:
    """`write(tmp)` into a temp file beside `path`, then rename: for every file written here, rows
    or text, so a reader or a crash mid-write never leaves half a file. A failed write (the disk
    is full, the folder is read-only) is one ConfigError naming `path`, and the folders made for
    it are removed again."""
    path = Path(path)
    with writing(path), new_folders(path.parent):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            write(tmp)
            os.chmod(tmp, 0o644)  # mkstemp makes it 0600; an output should read like any other written file
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path


def write_parquet(df: pd.DataFrame, path: str | Path) -> Path:
    """Result rows, in the schema, written atomically so a reader never sees half a file."""
    rows = to_frame(df.to_dict("records"))
    return write_atomic(path, lambda tmp: rows.to_parquet(tmp, engine="pyarrow", index=False))


def read_parquet(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise DataError(f"no results file at {str(path)!r}")
    return to_frame(read_parquet_file(path, "results file", error=DataError).to_dict("records"))


def write_text(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Per cell across seeds: mean, sample standard deviation (ddof=1; NaN with one seed) and number
    of seeds of the accuracy (of `value` for the rows of `STATISTICS`), and `worst_mean`,
    `worst_std` of the worst-case accuracy (NaN on an attack variant's rows, folded into its model's)."""
    keys = ["model", "dataset", "split", *CELL_KEYS]
    score = df["accuracy"]
    if "value" in df.columns:  # a statistic row summarises its value
        score = df["value"].where(df["perturbation"].isin(STATISTICS), df["accuracy"])
    worst = df["worst_case_accuracy"] if "worst_case_accuracy" in df.columns else math.nan
    g = df.assign(_score=score, _worst=worst).groupby(keys, dropna=False, sort=False)
    out = g.agg(
        mean=("_score", "mean"),
        std=("_score", lambda s: float(s.std(ddof=1))),
        seeds=("_score", "count"),
        worst_mean=("_worst", "mean"),
        worst_std=("_worst", lambda s: float(s.std(ddof=1))),
    ).reset_index()
    return out


def _num(v: float) -> str:
    return f"{v:g}"


def _column_label(row: Mapping[str, Any], show_steps: bool) -> str:
    parts = []
    if not math.isnan(row["sigma"]):
        parts.append(f"σ={_num(row['sigma'])}")
    if not math.isnan(row["eps"]):
        parts.append(f"ε={_num(row['eps'])}")
    if not math.isnan(row["alpha"]):
        parts.append(f"α={_num(row['alpha'])}")
    if show_steps and not math.isnan(row["steps"]):
        parts.append(f"K={int(row['steps'])}")
    if not math.isnan(row["restarts"]) and row["restarts"] > 1:
        parts.append(f"R={int(row['restarts'])}")
    return ", ".join(parts) or "-"


def _cell(mean: float, std: float) -> str:
    return f"{100 * mean:.2f} ± " + ("–" if math.isnan(std) else f"{100 * std:.2f}")


def _statistic_cell(mean: float, std: float) -> str:
    return f"{mean:.4g} ± " + ("–" if math.isnan(std) else f"{std:.2g}")


def _markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


@dataclass(frozen=True)
class SummaryTable:
    """One thesis table as data, so the markdown and the machine-readable wide table cannot drift:
    `rows` pairs each row's index values with its {column label: (mean, std)} cells (fractions)."""

    key: str
    title: str
    index: tuple[str, ...]
    columns: tuple[str, ...]
    rows: tuple[tuple[tuple[str, ...], Mapping[str, tuple[float, float]]], ...]
    percent: bool = True  # accuracies shown in %; statistics as they are
    note: str = ""  # printed between the title and the table (what a worst case is, a masking warning)

    def markdown(self) -> str:
        cell = _cell if self.percent else _statistic_cell
        body = [[*keys, *(cell(*cells[c]) if c in cells else "" for c in self.columns)] for keys, cells in self.rows]
        note = f"{self.note}\n\n" if self.note else ""
        return f"## {self.title}\n\n{note}" + _markdown([*self.index, *self.columns], body)

    def frame(self) -> pd.DataFrame:
        """Wide: the index columns, then `<cell> mean` and `<cell> std` (fractions, NaN if not run)."""
        data: dict[str, list[Any]] = {k: [keys[i] for keys, _ in self.rows] for i, k in enumerate(self.index)}
        for c in self.columns:
            data[f"{c} mean"] = [cells[c][0] if c in cells else math.nan for _, cells in self.rows]
            data[f"{c} std"] = [cells[c][1] if c in cells else math.nan for _, cells in self.rows]
        out = pd.DataFrame(data)
        return out.astype({k: "string" for k in self.index} | {k: "float64" for k in out.columns[len(self.index) :]})


def one_split(df: pd.DataFrame) -> str:
    """The one split the rows were evaluated on; rows of several splits cannot share a table."""
    splits = sorted(set(df["split"])) if "split" in df.columns else ["test"]
    if len(splits) != 1:
        raise DataError(
            f"the results mix the splits {', '.join(splits)}; a table states one split: "
            f"keep the rows of one (e.g. df[df['split'] == 'test']) before making tables"
        )
    return str(splits[0])


def model_order(labels: Iterable[str]) -> list[str]:
    """Labels in order of first appearance, with each `name[variant]` right after its `name`, so a
    variant's rows sit next to their model's in every table and legend."""
    seen = list(dict.fromkeys(labels))
    bases = list(dict.fromkeys(base_label(m) for m in seen))
    return sorted(seen, key=lambda m: (bases.index(base_label(m)), m != base_label(m), seen.index(m)))


def summary_tables(df: pd.DataFrame) -> list[SummaryTable]:
    """The thesis tables (seed 000 Tables 5.1-5.5): clean + missing modality (a row per model, a
    column per condition), then one per attack (rows target modality × model, a column per
    parameter setting); attacks in `ATTACK_ORDER`, then any other alphabetically. An attack table
    holds the per-cell accuracy and carries a gradient-masking warning where a curve rises with ε
    (`rising_curves`); after the last attack of a norm family (`robustmm.worst_case.NESTED`) comes
    the family's worst-case table, a column per budget."""
    if df.empty:
        return []
    one_split(df)
    s = summarise(df)
    models = model_order(s["model"])
    tables: list[SummaryTable] = []

    cond = s[s["perturbation"].isin(["clean", "missing"])]
    if not cond.empty:
        labels = ["clean"] + [f"{t} missing" for t in dict.fromkeys(cond[cond["perturbation"] == "missing"]["target"])]
        rows = []
        for m in models:
            cells = {}
            for lab in labels:
                pert, tgt = ("clean", "none") if lab == "clean" else ("missing", lab.removesuffix(" missing"))
                hit = cond[(cond["model"] == m) & (cond["perturbation"] == pert) & (cond["target"] == tgt)]
                if len(hit):
                    cells[lab] = (float(hit["mean"].iloc[0]), float(hit["std"].iloc[0]))
            if cells:  # an attack variant has no clean rows of its own: no empty row for it
                rows.append(((m,), cells))
        tables.append(
            SummaryTable("clean_missing", "Clean and missing modality", ("model",), tuple(labels), tuple(rows))
        )

    attacks = [a for a in ATTACK_ORDER if a in set(s["perturbation"])]
    attacks += sorted(set(s["perturbation"]) - set(ATTACK_ORDER) - {"clean", "missing", *STATISTICS})
    for attack in attacks:
        part = s[s["perturbation"] == attack]
        show_steps = part["steps"].nunique(dropna=True) > 1
        part = part.assign(column=[_column_label(r, show_steps) for r in part.to_dict("records")])
        part = part.sort_values(["eps", "alpha", "sigma", "steps", "restarts"], na_position="first", kind="stable")
        columns = tuple(dict.fromkeys(part["column"]))
        steps = part["steps"].dropna().unique()
        title = TITLES.get(attack, attack)
        if len(steps) == 1:
            title += f", K={int(steps[0])}"
        rows = _target_model_rows(part, models, "column")
        note = _masking_note(rising_curves(df, attack))
        tables.append(SummaryTable(attack, title, ("target", "model"), columns, rows, note=note))
        fam = family(attack)
        members = [a for a in attacks if family(a) == fam]
        if fam in NESTED and attack == members[-1]:  # after the family's last attack table
            tables.append(_worst_table(s, fam, members, models))
    stats = s[s["perturbation"].isin(STATISTICS)]
    if not stats.empty:
        columns = tuple(p for p in STATISTICS if p in set(stats["perturbation"]))
        rows = _target_model_rows(stats, models, "perturbation")
        title = "Certificate: mean certified L2 radius, vulnerability η and its ratio (not %)"
        tables.append(SummaryTable("certificate", title, ("target", "model"), columns, rows, percent=False))
    return tables


def _target_model_rows(
    part: pd.DataFrame, models: list[str], column: str, score: tuple[str, str] = ("mean", "std")
) -> tuple:
    """A (target, model) row per pair present, its cells keyed by the `column` value."""
    mean, std = score
    rows = []
    for tgt in dict.fromkeys(part["target"]):
        for m in models:
            sub = part[(part["target"] == tgt) & (part["model"] == m)]
            if not sub.empty:
                rows.append(((tgt, m), {r[column]: (float(r[mean]), float(r[std])) for r in sub.to_dict("records")}))
    return tuple(rows)


@dataclass(frozen=True)
class Rise:
    """A per-cell accuracy curve that rises with ε: `high` at `high_eps` exceeds `low` at the smaller
    `low_eps` (0: clean) by more than the tolerance (mean over seeds, the worst cell at each ε)."""

    attack: str
    target: str
    model: str
    low_eps: float
    low: float
    high_eps: float
    high: float

    def text(self) -> str:
        at = lambda e: "clean" if e == 0 else f"ε={_num(e)}"
        return (
            f"{self.target} / {self.model}: {100 * self.low:.2f} % at {at(self.low_eps)}, "
            f"{100 * self.high:.2f} % at {at(self.high_eps)}"
        )


RISE_TOLERANCE = 0.005
"""A rise counts when larger than this (0.5 percentage points) and than one sample (1/n)."""


def rising_curves(df: pd.DataFrame, attack: str) -> list[Rise]:
    """The (target, model) curves of an L∞ or L2 `attack` whose per-cell accuracy rises with ε.

    Per seed the worst cell at each ε (several step sizes: the attacker's best) and the model's
    clean accuracy at ε = 0, then the mean over seeds; a curve is flagged at its largest rise over
    the running minimum. The balls are nested, so a true robust accuracy cannot rise: a rise is a
    sign of gradient masking or a weak attack, and the worst-case accuracy is the number to trust."""
    if family(attack) not in ("linf", "l2"):
        return []
    part = df[(df["perturbation"] == attack) & df["eps"].notna() & df["accuracy"].notna()]
    if part.empty:
        return []
    tolerance = max(RISE_TOLERANCE, 1 / max(int(part["n"].max()), 1))
    clean = df[df["perturbation"] == "clean"]
    clean_of = {(base_label(m), s): a for m, s, a in zip(clean["model"], clean["seed"], clean["accuracy"], strict=True)}
    worst = part.groupby(["target", "model", "seed", "eps"], sort=False)["accuracy"].min().reset_index()
    zero = [
        {"target": t, "model": m, "seed": s, "eps": 0.0, "accuracy": clean_of[(base_label(m), s)]}
        for t, m, s in worst[["target", "model", "seed"]].drop_duplicates().itertuples(index=False)
        if (base_label(m), s) in clean_of
    ]
    points = pd.concat([pd.DataFrame(zero, columns=worst.columns), worst], ignore_index=True)
    means = points.groupby(["target", "model", "eps"], sort=False)["accuracy"].mean().reset_index()
    rises = []
    for (target, model), curve in means.groupby(["target", "model"], sort=False):
        curve = curve.sort_values("eps")
        best: Rise | None = None
        low, low_eps = math.inf, math.nan
        for eps, acc in zip(curve["eps"], curve["accuracy"], strict=True):
            if acc - low > tolerance and (best is None or acc - low > best.high - best.low):
                best = Rise(attack, str(target), str(model), float(low_eps), float(low), float(eps), float(acc))
            if acc < low:
                low, low_eps = acc, eps
        if best is not None:
            rises.append(best)
    return rises


def _masking_note(rises: list[Rise]) -> str:
    if not rises:
        return ""
    curves = "; ".join(r.text() for r in rises)
    return (
        f"**Warning: possible gradient masking.** Per-cell accuracy rises with ε on {curves}. The ε-balls are "
        "nested, so true robust accuracy cannot rise; trust the worst-case table below."
    )


FAMILY_TITLES = {"linf": "L∞", "l2": "L2", "gaussian": "Gaussian noise"}


def _worst_table(s: pd.DataFrame, fam: str, members: list[str], models: list[str]) -> SummaryTable:
    """One table per norm family: the worst-case accuracy depends only on (run, target, budget), the
    same for every attack of the family at that budget, so a column per budget holds them all."""
    budget = NESTED[fam]
    part = s[s["perturbation"].isin(members) & s["worst_mean"].notna() & s[budget].notna()]
    part = part.sort_values(budget, kind="stable").drop_duplicates(["model", "target", budget])
    sym = "σ" if budget == "sigma" else "ε"
    part = part.assign(column=[f"{sym}={_num(v)}" for v in part[budget]])
    columns = tuple(dict.fromkeys(part["column"]))
    rows = _target_model_rows(part, models, "column", ("worst_mean", "worst_std"))
    if fam == "gaussian":
        title = "Gaussian noise: worst case"
        note = (
            "Per-sample worst case: a sample counts at σ only if it is classified correctly clean and under "
            "the noise at every σ' ≤ σ on this target."
        )
    else:
        names = ", ".join(TITLES.get(a, a).split(" (")[0] for a in members)
        title = f"Worst case, {FAMILY_TITLES[fam]} ({names})"
        note = (
            f"Per-sample worst case: a sample counts at ε only if it is classified correctly clean and under every "
            f"{FAMILY_TITLES[fam]} attack above ({names}, every step size) at every ε' ≤ ε on this target, and under "
            "every attack variant of the model (folded into the model's row); the tables above score each cell "
            "on its own."
        )
    return SummaryTable(f"{fam}_worst", title, ("target", "model"), columns, rows, note=note)


def summary_markdown(df: pd.DataFrame, tables: list[SummaryTable] | None = None) -> str:
    """Tables in the layout of the thesis (seed 000 Tables 5.1-5.5): accuracy in %, mean ± std
    over seeds. One table for clean + missing modality (models × conditions), then one per
    attack (target modality × model rows, one column per parameter setting). `tables`: those
    `summary_tables(df)` already built, for a caller that also writes them as data."""
    if df.empty:
        return "_no results_\n"
    seeds = sorted(set(df["seed"]))
    split = one_split(df)
    intro = f"Accuracy (%) on the {split} split, mean ± std over {len(seeds)} seed(s): {', '.join(map(str, seeds))}."
    intro += (
        " The std is the sample std (ddof=1), – with one seed. Each attack table gives the per-cell accuracy; "
        "the worst-case table after a norm family's attacks counts a sample only if it survives every attack of "
        "the family at every smaller budget."
    )
    tables = summary_tables(df) if tables is None else tables
    return "\n\n".join([intro, *(t.markdown() for t in tables)]) + "\n"
