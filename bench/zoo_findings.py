"""Do seed 000's qualitative findings reproduce? Checked on the results of `robustmm report`.

    robustmm report --models all --dataset synth-mhd --grid thesis --seeds 0-2 --out runs/zoo
    python bench/zoo_findings.py runs/zoo            # prints markdown for bench/RESULTS.md

The thesis (seed 000, §5) reports three things this script tests, each with a stated rule, so
the verdict is the numbers' and not a reading of them:

1. AE models lean on one modality: with one modality missing, their accuracy falls much more
   for one of the two (rule: the two missing-modality accuracies differ by ≥ 20 points); the
   model leans on the modality whose absence costs the most.
2. GMC-family models survive a missing modality (rule: the worse missing-modality accuracy is
   ≥ 70 % of clean accuracy), unlike the AE models.
3. GMCWD and DGMC are more robust to Gaussian noise than GMC (rule: their mean accuracy over
   the Gaussian cells exceeds GMC's by more than the larger of the two standard deviations
   across seeds).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from robustmm.models.base import base_label

AE_MODELS = ("dae", "vae", "mdae", "mvae", "cmdae", "cmvae", "cmdvae")
GMC_MODELS = ("gmc", "gmcwd", "dgmc", "rgmc")
LEAN_GAP = 0.20
SURVIVE_SHARE = 0.70


def per_seed(df: pd.DataFrame, model: str, perturbation: str, target: str | None = None) -> np.ndarray:
    """Mean accuracy over the matching cells, one value per seed."""
    sub = df[(df.model == model) & (df.perturbation == perturbation)]
    if target is not None:
        sub = sub[sub.target == target]
    return sub.groupby("seed").accuracy.mean().to_numpy()


def pct(values: np.ndarray) -> str:
    if not len(values):
        return "–"
    std = f"{100 * values.std(ddof=1):.1f}" if len(values) > 1 else "–"  # sample std; none with one seed
    return f"{100 * values.mean():.1f} ± {std}"


def missing_table(df: pd.DataFrame, models: list[str], modalities: list[str]) -> tuple[list[str], dict]:
    header = ["model", "clean", *[f"{m} missing" for m in modalities], "gap (points)", "reading"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    verdicts: dict[str, dict] = {}
    for model in models:
        clean = per_seed(df, model, "clean")
        missing = {m: per_seed(df, model, "missing", m) for m in modalities}
        means = {m: v.mean() for m, v in missing.items()}
        worst, best = min(means, key=means.get), max(means, key=means.get)
        gap = means[best] - means[worst]
        share = means[worst] / clean.mean()
        leans = gap >= LEAN_GAP
        survives = share >= SURVIVE_SHARE
        reading = f"leans on {worst}" if leans else "uses both"  # `worst`: the one whose absence hurts most
        reading += (
            f"; survives ({100 * share:.0f} % of clean)" if survives else f"; fails ({100 * share:.0f} % of clean)"
        )
        verdicts[model] = {"leans": leans, "survives": survives}
        cells = [pct(clean), *[pct(missing[m]) for m in modalities], f"{100 * gap:.1f}", reading]
        lines.append("| " + " | ".join([model, *cells]) + " |")
    return lines, verdicts


def noise_table(df: pd.DataFrame, models: list[str]) -> tuple[list[str], dict]:
    lines = [
        "| model | Gaussian, mean over σ and targets | vs GMC (points) | more robust than GMC? |",
        "|" + " --- |" * 4,
    ]
    base = per_seed(df, "gmc", "gaussian")
    verdicts = {}
    for model in models:
        values = per_seed(df, model, "gaussian")
        if not len(values):
            continue
        diff = values.mean() - base.mean()
        margin = max(values.std(), base.std())
        better = model != "gmc" and diff > margin
        verdicts[model] = better
        answer = "–" if model == "gmc" else ("yes" if better else "no")
        lines.append(f"| {model} | {pct(values)} | {100 * diff:+.1f} | {answer} |")
    return lines, verdicts


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report_dir", help="the --out of a robustmm report run")
    args = p.parse_args(argv)
    path = Path(args.report_dir) / "results.parquet"
    if not path.is_file():
        print(f"error: no {path}; run robustmm report --out {args.report_dir} first", file=sys.stderr)
        return 2
    df = pd.read_parquet(path)
    df = df[df.model == df.model.map(base_label)]  # the models themselves, not their attack variants
    modalities = sorted(set(df[df.perturbation == "missing"].target))
    seeds = sorted(set(df.seed))
    ae = [m for m in AE_MODELS if m in set(df.model)]
    gmc = [m for m in GMC_MODELS if m in set(df.model)]
    print(f"Accuracy (%) mean ± sample std (ddof=1) over seeds {', '.join(map(str, seeds))}.\n")
    lines, miss = missing_table(df, ae + gmc, modalities)
    print("\n".join(lines) + "\n")
    if "gmc" in gmc:
        noise, better = noise_table(df, gmc)
        print("\n".join(noise) + "\n")
    else:
        better = {}
    leaning = [m for m in ae if miss[m]["leans"]]
    surviving = [m for m in gmc if miss[m]["survives"]]
    print(f"1. AE models that lean on one modality: {len(leaning)}/{len(ae)} ({', '.join(leaning) or 'none'}).")
    print(
        f"2. GMC-family models that survive a missing modality: {len(surviving)}/{len(gmc)} "
        f"({', '.join(surviving) or 'none'}); AE models that do: "
        f"{', '.join(m for m in ae if miss[m]['survives']) or 'none'}."
    )
    robust = [m for m in ("gmcwd", "dgmc") if better.get(m)]
    print(f"3. More robust to Gaussian noise than GMC: {', '.join(robust) or 'neither'} of gmcwd, dgmc.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
