"""GMC's default budget against the raw linear probe on synth-mhd: clean accuracy only.

Each variant changes one thing of the default run (representation epochs or learning rate or
batch size, classifier epochs, or GMC's τ) and is scored on the VALIDATION split, which is
where a budget is chosen; the chosen one (the default) and the probe are then scored on TEST
over more seeds. One JSON line per (variant, seed, split) goes to OUT/runs.jsonl; a line
already there is not run again, so an interrupted run continues.

    python bench/gmc_budget.py --split validation --seeds 0,1         # the variants
    python bench/gmc_budget.py --split test --seeds 0-4 --only default raw-linear
    python bench/gmc_budget.py --summary                              # OUT/summary.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from robustmm.config import EvalConfig, OptimConfig, RunConfig, parse_seeds
from robustmm.experiment import prepare, run_seed

OUT = Path(__file__).parent / "gmc_budget"

# name -> (model, model options, representation-stage changes, classifier-stage changes)
VARIANTS: dict[str, tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "default": ("gmc", {}, {}, {}),
    "raw-linear": ("raw", {"hidden": []}, {}, {}),
    "raw-linear clf20": ("raw", {"hidden": []}, {}, {"epochs": 20}),
    "clf20": ("gmc", {}, {}, {"epochs": 20}),
    "epochs3": ("gmc", {}, {"epochs": 3}, {}),
    "lr3e-4": ("gmc", {}, {"lr": 3e-4}, {}),
    "lr3e-3": ("gmc", {}, {"lr": 3e-3}, {}),
    "batch256": ("gmc", {}, {"batch_size": 256}, {}),
    "tau0.2": ("gmc", {"tau": 0.2}, {}, {}),
    "tau0.3": ("gmc", {"tau": 0.3}, {}, {}),
}


def config(name: str, seed: int, split: str) -> RunConfig:
    model, options, train, classifier = VARIANTS[name]
    return RunConfig(
        model=model,
        model_options=options,
        train=OptimConfig(**{"epochs": 5, **train}),
        classifier=OptimConfig(**classifier),
        eval=EvalConfig(grid=[{"attack": "clean"}], split=split),
        seeds=(seed,),
        device="cpu",
    )


def done(path: Path) -> set[tuple[str, int, str]]:
    if not path.is_file():
        return set()
    return {(r["variant"], r["seed"], r["split"]) for r in map(json.loads, path.read_text().splitlines())}


def run(names: list[str], seeds: tuple[int, ...], split: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "runs.jsonl"
    for name in names:
        for seed in seeds:
            if (name, seed, split) in done(path):
                continue
            start = time.perf_counter()
            rows, _ = run_seed(prepare(config(name, seed, split)), seed)
            line = {"variant": name, "seed": seed, "split": split, "accuracy": rows[0]["accuracy"]}
            line["seconds"] = round(time.perf_counter() - start, 1)
            print(json.dumps(line), flush=True)
            with path.open("a") as f:
                f.write(json.dumps(line) + "\n")


def markdown(df: pd.DataFrame) -> str:
    """A plain markdown table of a frame (index included)."""
    flat = df.reset_index()
    lines = ["| " + " | ".join(map(str, flat.columns)) + " |", "|" + " --- |" * len(flat.columns)]
    cell = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in flat.values]
    return "\n".join(lines)


def summary(out: Path) -> str:
    df = pd.DataFrame([json.loads(x) for x in (out / "runs.jsonl").read_text().splitlines()])
    g = df.groupby(["split", "variant"])["accuracy"]
    table = pd.DataFrame({"seeds": g.count(), "mean %": 100 * g.mean(), "std %": 100 * g.std(ddof=1)})
    per_seed = df.pivot_table(index=["split", "seed"], columns="variant", values="accuracy")
    gap = (100 * (per_seed["default"] - per_seed["raw-linear"])).dropna().rename("GMC − raw linear (points)")
    text = "# GMC's budget vs the raw linear probe (clean accuracy)\n\n" + markdown(table) + "\n\n"
    text += "Per seed, GMC at the default budget minus the raw linear probe:\n\n" + markdown(gap.to_frame()) + "\n"
    (out / "summary.md").write_text(text)
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", choices=("validation", "test"), default="validation")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--only", nargs="*", help="variant names (default: all)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--summary", action="store_true", help="only write OUT/summary.md from runs.jsonl")
    args = p.parse_args()
    if not args.summary:
        run(args.only or list(VARIANTS), parse_seeds(args.seeds), args.split, args.out)
    print(summary(args.out))


if __name__ == "__main__":
    main()
