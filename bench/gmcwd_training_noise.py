"""Ablation of GMCWD's training noise: the share of samples left clean (`clean_prob`).

    python bench/gmcwd_training_noise.py                          # 0, 1/3, 1/2, 2/3 × seeds 0-1
    python bench/gmcwd_training_noise.py --clean-probs 0,0.25 --seeds 0-4 --device cuda

With `noise_mode: one` and `clean_prob: 0` (the thesis) every training sample has exactly one
noisy modality, so the latent of a clean input is never seen in training, while the classifier
is trained — and the model scored — on clean latents. This trains GMCWD once per (clean_prob,
seed) on synth-mhd with everything else fixed (reconstruction summed per sample, λ = 0.5/0.5,
σ = 0.5) and scores clean accuracy, a missing modality, Gaussian noise and PGD on each modality.

Scored on the dataset's validation split (the default is then chosen without touching test);
the `split` column of every row says so. Writes
rows.csv (one row per cell × clean_prob × seed), summary.csv (mean and sample std over seeds),
runs.json (config, split, per-epoch training history incl. contrastive, recon, recon_ratio) to
--out and prints the summary as a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from robustmm.config import from_dict, parse_seeds
from robustmm.evaluate import evaluate_pipeline
from robustmm.experiment import prepare
from robustmm.models.base import build_model
from robustmm.train import seed_everything, train_pipeline

OUT = Path(__file__).resolve().parent / "gmcwd_noise"
GRID = [
    {"attack": "missing", "targets": "each"},
    {"attack": "gaussian", "targets": "each", "sigma": [0.25, 0.5, 1.0]},
    {"attack": "pgd", "targets": "each", "eps": 0.1, "alpha": 0.025, "steps": 5},
]


def cell_label(row: dict[str, Any]) -> str:
    p, t = row["perturbation"], row["target"]
    if p == "clean":
        return "clean"
    if p == "missing":
        return f"{t} missing"
    if p == "gaussian":
        return f"{t} σ={row['sigma']:g}"
    return f"{p} {t} ε={row['eps']:g}"


def run_config(args: argparse.Namespace, clean_prob: float) -> dict[str, Any]:
    dataset: dict[str, Any] = {"name": args.dataset, "n_train": args.n_train, "n_test": args.n_test}
    if args.difficulty is not None:
        dataset["difficulty"] = args.difficulty
    return {
        "model": {"name": "gmcwd", "clean_prob": clean_prob, "noise_mode": "one", "noise_sigma": args.sigma},
        "dataset": dataset,
        "train": {"epochs": args.epochs},
        "classifier": {"epochs": args.classifier_epochs},
        "eval": {"grid": GRID, "max_samples": args.max_samples},
        "device": args.device,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shares = "0,0.3333333333333333,0.5,0.6666666666666666"
    p.add_argument("--clean-probs", default=shares, help="comma-separated shares")
    p.add_argument("--seeds", default="0-1")
    p.add_argument("--dataset", default="synth-mhd")
    p.add_argument("--n-train", type=int, default=6000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--difficulty", type=float, default=None, help="synth-mhd difficulty (default: the dataset's)")
    p.add_argument("--epochs", type=int, default=4, help="representation epochs")
    p.add_argument("--classifier-epochs", type=int, default=10)
    p.add_argument("--sigma", type=float, default=0.5, help="training noise σ")
    p.add_argument("--max-samples", type=int, default=None, help="score at most this many samples")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=str(OUT), help="directory for rows.csv, summary.csv, runs.json")
    args = p.parse_args(argv)
    clean_probs = [float(v) for v in args.clean_probs.split(",")]
    seeds = parse_seeds(args.seeds)

    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for clean_prob in clean_probs:
        cfg = from_dict(run_config(args, clean_prob))
        prep = prepare(cfg)
        data = prep.dataset
        split = "validation"  # the default is chosen without touching test
        for seed in seeds:
            start = time.perf_counter()
            seed_everything(seed)
            model = build_model(cfg.model, data.modalities, cfg.model_options).to(prep.device)
            pipe = train_pipeline(model, data, cfg.train, cfg.classifier, seed=seed)
            got = evaluate_pipeline(
                pipe.model,
                pipe.classifier,
                data,
                prep.cells,
                seed=seed,
                max_samples=cfg.eval.max_samples,
                labels={"model": cfg.model, "dataset": cfg.dataset},
                split=split,
            )
            for row in got:
                rows.append({"clean_prob": clean_prob, "cell": cell_label(row), **row})
            last = pipe.history["representation"][-1]
            runs.append(
                {
                    "clean_prob": clean_prob,
                    "seed": seed,
                    "split": split,
                    "config": cfg.to_dict(),
                    "seconds": time.perf_counter() - start,
                    "history": pipe.history,
                }
            )
            print(
                f"clean_prob={clean_prob:.3g} seed={seed}: clean {got[0]['accuracy']:.3f}, "
                f"contrastive {last['contrastive']:.3g}, recon {last['recon']:.3g}, "
                f"recon_ratio {last['recon_ratio']:.3g}",
                file=sys.stderr,
            )

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    df.to_csv(out / "rows.csv", index=False)
    summary = (
        df.groupby(["clean_prob", "split", "cell"], sort=False)
        .accuracy.agg(mean="mean", std=lambda s: s.std(ddof=1), seeds="count")
        .reset_index()
    )
    summary.to_csv(out / "summary.csv", index=False)
    (out / "runs.json").write_text(json.dumps(runs, indent=1, default=str))
    print(markdown(summary, runs))
    return 0


def markdown(summary: pd.DataFrame, runs: list[dict[str, Any]]) -> str:
    """clean_prob × cell, mean ± sample std over seeds (%), plus the last epoch's recon_ratio."""
    cells = list(dict.fromkeys(summary.cell))
    ratio = pd.DataFrame(
        [{"clean_prob": r["clean_prob"], "ratio": r["history"]["representation"][-1]["recon_ratio"]} for r in runs]
    )
    ratio = ratio.groupby("clean_prob").ratio.mean()
    split = ", ".join(sorted(set(summary.split)))
    lines = [
        f"accuracy (%) on {split}, mean ± sample std over seeds",
        "",
        "| clean_prob | " + " | ".join(cells) + " | recon_ratio |",
        "|" + " --- |" * (len(cells) + 2),
    ]
    for cp, group in summary.groupby("clean_prob", sort=False):
        by = group.set_index("cell")
        vals = [
            f"{100 * by.at[c, 'mean']:.1f} ± {100 * by.at[c, 'std']:.1f}"
            if by.at[c, "seeds"] > 1
            else f"{100 * by.at[c, 'mean']:.1f}"
            for c in cells
        ]
        lines.append(f"| {cp:.3g} | " + " | ".join(vals) + f" | {ratio[cp]:.3g} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
