"""Time the thesis grid on a trained GMCWD: batched evaluator vs a plain per-cell loop.

    python bench/grid_eval.py [--n-test 2000] [--epochs 2] [--device auto] [--record]

Both paths compute the same numbers (checked here); the batched one runs every cell of an
attack in one pass per step. --record appends the figures, the machine and the date to
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
from pathlib import Path

import torch

from robustmm.attacks import GRIDS, evaluate_grid
from robustmm.config import OptimConfig
from robustmm.data import load_dataset
from robustmm.device import resolve_device
from robustmm.models import Chain, build_model
from robustmm.train import seed_everything, train_pipeline


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu}, {torch.get_num_threads()} threads, {os.cpu_count()} cores (torch {torch.__version__})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--n-train", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=512, help="evaluator chunk size")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--record", action="store_true", help="append the result to bench/RESULTS.md")
    args = ap.parse_args()

    device = resolve_device(args.device)
    ds = load_dataset("synth-mhd", options={"n_train": args.n_train, "n_test": args.n_test}).to(device)
    seed_everything(0)
    model = build_model("gmcwd", ds.modalities, {}).to(device)
    pipe = train_pipeline(model, ds, OptimConfig(epochs=args.epochs), OptimConfig(epochs=5), seed=0)
    chain = Chain(pipe.model, pipe.classifier).eval()
    cells = GRIDS.get("thesis")(ds.modality_names)

    def timed(batched: bool) -> tuple[float, list[dict]]:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        rows = evaluate_grid(
            chain, ds.test.inputs, ds.test.labels, cells, ds.value_ranges,
            seed=0, batch_size=args.batch_size, batched=batched,
        )  # fmt: skip
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, rows

    t_batched, rows_b = timed(True)
    t_loop, rows_l = timed(False)
    worst = max(abs(a["correct"] - b["correct"]) for a, b in zip(rows_b, rows_l, strict=True))
    clean = next(r["accuracy"] for r in rows_b if r["perturbation"] == "clean")
    line = (
        f"| {dt.date.today().isoformat()} | {machine(device)} | {len(cells)} | {args.n_test} | "
        f"{t_loop:.1f} | {t_batched:.1f} | {t_loop / t_batched:.2f}× | {worst} |"
    )
    print(f"thesis grid, {len(cells)} cells, {args.n_test} test samples, clean accuracy {100 * clean:.2f} %")
    print(f"per-cell loop {t_loop:.1f} s, batched {t_batched:.1f} s, speed-up {t_loop / t_batched:.2f}×")
    print(f"largest difference in correct samples per cell between the two: {worst}")
    if args.record:
        path = Path(__file__).with_name("RESULTS.md")
        with path.open("a") as f:
            f.write(line + "\n")
        print("recorded in bench/RESULTS.md")


if __name__ == "__main__":
    main()
