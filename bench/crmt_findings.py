"""CRMT's claims (seed 001, Tables 1-2, Figures 3 and 5) checked on a `robustmm report` over the
`crmt` grid, next to the paper's Kinetics-Sounds numbers.

    python bench/crmt_findings.py runs/crmt_features            # a report directory
    python bench/crmt_findings.py runs/crmt_synth

Each claim has a stated rule, applied to the mean over seeds ("beats" = by more than one
accuracy point, `MARGIN`); the verdict says whether it reproduces here. Rows of models the report lacks are left out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from robustmm.results import read_parquet

FAMILY = ("jt", "ojt", "crmt-jt", "crmt-at", "crmt-mix")
MARGIN = 0.01


def _seed_means(df: pd.DataFrame, mask: pd.Series, column: str = "accuracy") -> tuple[float, float]:
    per_seed = df[mask].groupby("seed")[column].mean()
    return (float(per_seed.mean()), float(per_seed.std(ddof=1))) if len(per_seed) else (np.nan, np.nan)


def summary(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One row per model: clean, joint and per-modality attacks, missing, certificate."""
    modalities = sorted({t for t in df["target"] if "+" not in t and t != "none"})
    joint = "+".join(sorted({m for t in df["target"] if "+" in t for m in t.split("+")}))
    out = []
    for model in [m for m in (*FAMILY, *sorted(set(df["model"]) - set(FAMILY))) if m in set(df["model"])]:
        d = df[df["model"] == model]
        row: dict[str, object] = {"model": model, "clean": _seed_means(d, d["perturbation"] == "clean")}
        for attack in ("fgm", "pgd_l2"):
            row[f"{attack} joint"] = _seed_means(d, (d["perturbation"] == attack) & (d["target"] == joint))
            for m in modalities:
                row[f"{attack} {m}"] = _seed_means(d, (d["perturbation"] == attack) & (d["target"] == m))
        for m in modalities:
            row[f"{m} missing"] = _seed_means(d, (d["perturbation"] == "missing") & (d["target"] == m))
        row["certified@0.1 joint"] = _seed_means(
            d, (d["perturbation"] == "certified") & (d["target"] == joint) & np.isclose(d["eps"], 0.1)
        )
        row["mean radius joint"] = _seed_means(
            d, (d["perturbation"] == "certified_radius") & (d["target"] == joint), "value"
        )
        row["η ratio"] = _seed_means(d, d["perturbation"] == "vulnerability_ratio", "value")
        out.append(row)
    return pd.DataFrame(out), modalities


def _fmt(cell: object, percent: bool) -> str:
    mean, std = cell  # type: ignore[misc]
    if np.isnan(mean):
        return ""
    if np.isnan(std):  # one seed: no sample std
        return f"{100 * mean:.1f} ± –" if percent else f"{mean:.3g} ± –"
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if percent else f"{mean:.3g} ± {std:.2g}"


def markdown(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for r in table.to_dict("records"):
        cells = [r["model"]] + [_fmt(r[c], c not in ("mean radius joint", "η ratio")) for c in cols[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(table: pd.DataFrame, modalities: list[str]) -> list[str]:
    get = {r["model"]: r for r in table.to_dict("records")}
    mean = lambda model, col: get[model][col][0] if model in get else np.nan  # noqa: E731
    lines = []

    def claim(text: str, holds: bool | None) -> None:
        lines.append(f"- {text}: {'reproduces' if holds else 'does not reproduce' if holds is not None else 'n/a'}")

    if "jt" in get and "crmt-jt" in get:
        claim(
            f"CRMT-JT is more accurate than JT on clean inputs (paper .643 → .758; here "
            f"{mean('jt', 'clean'):.3f} → {mean('crmt-jt', 'clean'):.3f})",
            mean("crmt-jt", "clean") > mean("jt", "clean") + MARGIN,
        )
        for attack, paper in (("fgm", (0.288, 0.491)), ("pgd_l2", (0.268, 0.468))):
            a, b = mean("jt", f"{attack} joint"), mean("crmt-jt", f"{attack} joint")
            claim(
                f"CRMT-JT beats JT under joint {attack} at ε=0.5 "
                f"(paper {paper[0]} → {paper[1]}; here {a:.3f} → {b:.3f})",
                b > a + MARGIN,
            )
    for variant in ("crmt-at", "crmt-mix"):
        if variant in get and "jt" in get:
            wins = [mean(variant, c) > mean("jt", c) + MARGIN for c in table.columns if c.startswith(("fgm", "pgd_l2"))]
            claim(f"{variant} beats JT on every FGM / L2-PGD cell ({sum(wins)}/{len(wins)})", all(wins))
    if "jt" in get and "crmt-jt" in get and len(modalities) == 2:
        gap = lambda m: abs(mean(m, f"pgd_l2 {modalities[0]}") - mean(m, f"pgd_l2 {modalities[1]}"))  # noqa: E731
        claim(
            f"CRMT-JT narrows the gap between the two uni-modal L2-PGD accuracies (JT {gap('jt'):.3f}, "
            f"CRMT-JT {gap('crmt-jt'):.3f})",
            gap("crmt-jt") < gap("jt"),
        )
        claim(
            f"CRMT-JT's vulnerability ratio is closer to 1 than JT's (JT {mean('jt', 'η ratio'):.3g}, "
            f"CRMT-JT {mean('crmt-jt', 'η ratio'):.3g})",
            mean("crmt-jt", "η ratio") < mean("jt", "η ratio"),
        )
        claim(
            f"CRMT-JT has a larger mean joint certified radius than JT ({mean('jt', 'mean radius joint'):.3g} → "
            f"{mean('crmt-jt', 'mean radius joint'):.3g})",
            mean("crmt-jt", "mean radius joint") > mean("jt", "mean radius joint"),
        )
    if "ojt" in get and "jt" in get:
        cols = [c for c in table.columns if c.startswith(("fgm", "pgd_l2"))]
        better = sum(mean("ojt", c) > mean("jt", c) + MARGIN for c in cols)
        claim(
            f"the orthogonal framework alone (OJT) is not what makes CRMT robust: OJT beats JT "
            f"on {better}/{len(cols)} attack cells (paper Fig. 5: no gain)",
            better <= len(cols) // 2,
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report", help="a robustmm report directory (holding results.parquet)")
    args = p.parse_args(argv)
    path = Path(args.report) / "results.parquet"
    if not path.is_file():
        print(
            f"crmt_findings: no results.parquet in {args.report!r}; run robustmm report --grid crmt first",
            file=sys.stderr,
        )
        return 2
    table, modalities = summary(read_parquet(path))
    print(markdown(table))
    print()
    print("\n".join(verdicts(table, modalities)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
