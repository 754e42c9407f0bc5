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

Beside them, two checks every robustness table owes its reader: whether the representations
beat the raw-input baselines of `robustmm report` (clean accuracy and the per-sample worst case
over the L∞ attacks, rule as in 3.), and, for RGMC, how far the per-cell PGD accuracy on the
image and the per-sample worst case (over ε' ≤ ε and both attack variants) part.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from robustmm.models.base import base_label
from robustmm.results import read_parquet

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


def _std(values: np.ndarray) -> float:
    """Sample standard deviation across seeds (ddof=1); 0 for a single seed."""
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def pct(values: np.ndarray) -> str:
    if not len(values):
        return "–"
    spread = f"{100 * _std(values):.1f}" if len(values) > 1 else "–"
    return f"{100 * values.mean():.1f} ± {spread}"


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
        margin = max(_std(values), _std(base))
        better = model != "gmc" and diff > margin
        verdicts[model] = better
        answer = "–" if model == "gmc" else ("yes" if better else "no")
        lines.append(f"| {model} | {pct(values)} | {100 * diff:+.1f} | {answer} |")
    return lines, verdicts


def worst_linf(df: pd.DataFrame, model: str) -> np.ndarray:
    """Per seed: the worst-case L∞ accuracy (fgsm, bim, pgd), mean over targets and budgets."""
    sub = df[(df.model == model) & df.perturbation.isin(["fgsm", "bim", "pgd"])]
    if "worst_case_accuracy" not in sub.columns or sub.empty:
        return np.array([])
    cells = sub.drop_duplicates(["seed", "target", "eps"])  # every L∞ row at one (target, ε) shares it
    return cells.groupby("seed").worst_case_accuracy.mean().to_numpy()


def baseline_table(df: pd.DataFrame, models: list[str]) -> tuple[list[str], dict]:
    """Clean and worst-case L∞ accuracy of each model and raw-input baseline; does GMC beat the
    raw linear probe on all modalities?"""
    baselines = sorted(m for m in set(df.model) if m.startswith("raw-"))
    lines = ["| model | clean | L∞ worst case, mean over targets and ε |", "|" + " --- |" * 3]
    for model in [*models, *baselines]:
        lines.append(f"| {model} | {pct(per_seed(df, model, 'clean'))} | {pct(worst_linf(df, model))} |")
    verdicts = {}
    probe = "raw-linear-all"
    if probe in baselines:
        base = per_seed(df, probe, "clean")
        for model in models:
            values = per_seed(df, model, "clean")
            verdicts[model] = values.mean() - base.mean() > max(_std(values), _std(base))
    return lines, verdicts


def masking_table(df: pd.DataFrame, target: str = "image") -> list[str]:
    """RGMC's PGD accuracy on one modality per ε: per cell (worst step size) for each attack
    variant, and the per-sample worst case; GMC beside it."""
    pgd = df[(df.perturbation == "pgd") & (df.target == target)]
    rows = [m for m in ("rgmc", "rgmc[o-detached]", "gmc") if m in set(pgd.model)]
    if "rgmc" not in rows:
        return []
    eps = sorted(set(pgd.eps))
    lines = [
        f"| PGD (L∞) on {target}, % | " + " | ".join(f"ε = {e:g}" for e in eps) + " |",
        "|" + " --- |" * (len(eps) + 1),
    ]

    def cells(model: str, column: str) -> str:
        sub = pgd[pgd.model == model]
        per = sub.groupby(["seed", "eps"])[column].min().groupby("eps").mean()
        return " | ".join(f"{100 * per.get(e, np.nan):.1f}" for e in eps)

    for model in rows:
        lines.append(f"| {model}, per cell | {cells(model, 'accuracy')} |")
    for model in ("rgmc", "gmc"):
        if model in rows:
            label = f"{model}, worst case (ε' ≤ ε, L∞ attacks, variants)"
            lines.append(f"| {label} | {cells(model, 'worst_case_accuracy')} |")
    return lines


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report_dir", help="the --out of a robustmm report run")
    args = p.parse_args(argv)
    path = Path(args.report_dir) / "results.parquet"
    if not path.is_file():
        print(f"error: no {path}; run robustmm report --out {args.report_dir} first", file=sys.stderr)
        return 2
    everything = read_parquet(path)  # worst_case_accuracy recomputed from the masks
    df = everything[everything.model == everything.model.map(base_label)]  # the models, not their attack variants
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
    lines, beats = baseline_table(df, ae + gmc)
    print("\nRepresentations against the raw-input baselines (accuracy %):\n")
    print("\n".join(lines) + "\n")
    if beats:
        winners = [m for m, b in beats.items() if b]
        print(
            f"Beat the raw linear probe on all modalities on clean accuracy: {len(winners)}/{len(beats)} "
            f"({', '.join(winners) or 'none'}); gmc: {'yes' if beats.get('gmc') else 'no'}."
        )
    for target in modalities:
        masking = masking_table(everything, target)
        if masking:
            print(f"\nRGMC, per-cell against per-sample worst-case accuracy, PGD on {target}:\n")
            print("\n".join(masking))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
