"""Time what a sweep spends outside trial compute (Ray + Optuna + MLflow), per trial.

    python bench/sweep_overhead.py [--trials 6] [--n-train 4000] [--epochs 3] [--cpus N] [--out DIR] [--keep]

Runs `search_spaces/gmcwd_weights.yaml` with its smoke settings, one trial at a time on all the
CPUs (`budget.max_concurrent: 1`, `resources.cpu: N`), so that the sweep's wall time is the
trials' compute (the `train_seconds` + `eval_seconds` each trial reports) plus the overhead:
checking the sweep, starting Ray, MLflow and Optuna bookkeeping, starting each trial's worker
and loading its data, per-epoch reports and checkpoints, and ranking the trials at the end.
The defaults give trials of about 30 s on a 2-core CPU.

Prints each trial, the overhead split into before the first trial / inside trials / between
trials / after the last one, the driver time spent in the MLflow callback and the Optuna
searcher, and a table row for bench/RESULTS.md. The sweep goes to a temporary directory,
deleted at the end unless --keep (an --out you give is always kept).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from ray import tune

SPACE = Path(__file__).resolve().parent.parent / "search_spaces" / "gmcwd_weights.yaml"

# driver seconds spent in each instrumented function (name -> [calls, seconds])
SPENT: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])


def timed(fn: Any, name: str) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            SPENT[name][0] += 1
            SPENT[name][1] += time.perf_counter() - start

    return wrapper


def instrument() -> None:
    """Wrap the sweep's check, Ray start, MLflow callback and Optuna searcher with timers."""
    from robustmm.tune import runner
    from robustmm.tune.callbacks import TrackingCallback
    from robustmm.tune.search import ParetoOptunaSearch

    runner.check_sweep = timed(runner.check_sweep, "check")
    runner.connect_ray = timed(runner.connect_ray, "ray start")
    for hook in ("on_trial_start", "on_trial_result", "on_trial_complete", "on_trial_error"):
        setattr(TrackingCallback, hook, timed(getattr(TrackingCallback, hook), f"MLflow callback {hook}"))
    for hook in ("suggest", "on_trial_result", "on_trial_complete"):
        setattr(ParetoOptunaSearch, hook, timed(getattr(ParetoOptunaSearch, hook), f"Optuna searcher {hook}"))


class Timeline(tune.Callback):
    """Driver wall-clock times of each trial's start (its worker is up) and end."""

    def __init__(self) -> None:
        self.start: dict[str, float] = {}
        self.end: dict[str, float] = {}
        self.experiment_end: float | None = None

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.start.setdefault(trial.trial_id, time.perf_counter())

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.end[trial.trial_id] = time.perf_counter()

    on_trial_error = on_trial_complete

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.experiment_end = time.perf_counter()


def ray_seconds(experiment: Path) -> dict[str, float]:
    """Ray's own time per trial (`time_total_s` of its last result), by trial id."""
    out = {}
    for path in experiment.glob("*/result.json"):
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        if lines:
            last = json.loads(lines[-1])
            out[str(last["trial_id"])] = float(last["time_total_s"])
    return out


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {gpu}"


def versions() -> str:
    import mlflow
    import optuna
    import ray
    import torch

    return f"Ray {ray.__version__}, Optuna {optuna.__version__}, MLflow {mlflow.__version__}, torch {torch.__version__}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=6, help="number of trials (default 6)")
    ap.add_argument("--n-train", type=int, default=4000, help="synth-mhd training samples (default 4000)")
    ap.add_argument("--epochs", type=int, default=3, help="representation epochs per trial (default 3)")
    ap.add_argument("--cpus", type=float, default=float(os.cpu_count() or 1), help="CPUs per trial (default: all)")
    ap.add_argument("--out", help="sweep directory (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary sweep directory")
    args = ap.parse_args()

    from robustmm.tune.runner import run_sweep
    from robustmm.tune.space import load_sweep

    overrides = {
        "budget": {"num_samples": args.trials, "max_concurrent": 1},
        "resources": {"cpu": args.cpus, "gpu": 0},
        "run": {"dataset": {"n_train": args.n_train}, "train": {"epochs": args.epochs}},
    }
    spec = load_sweep(SPACE, smoke=True, overrides=overrides)
    cfg = spec.run_config()
    setting = (
        f"{spec.name} --smoke, {args.trials} trials one at a time on {args.cpus:g} CPUs: synth-mhd "
        f"{cfg.dataset_options.get('n_train')}/{cfg.dataset_options.get('n_test')} samples, "
        f"{cfg.train.epochs} + {cfg.classifier.epochs} epochs, grid {cfg.eval.grid}, seeds {list(cfg.seeds)}"
    )
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="sweep_overhead_"))

    instrument()
    timeline = Timeline()
    said: list[tuple[float, str]] = []

    def say(text: str) -> None:
        said.append((time.perf_counter(), text))
        print(f"[sweep] {text}", file=sys.stderr, flush=True)

    setting += f"; load average before: {os.getloadavg()[0]:.2f}"
    print(setting, flush=True)
    t_call = time.perf_counter()
    result = run_sweep(spec, out, callbacks=[timeline], say=say)
    t_return = time.perf_counter()
    try:
        report(args, spec, result, timeline, said, t_call, t_return, setting, out)
    finally:
        import ray

        ray.shutdown()
        if not args.out and not args.keep:
            shutil.rmtree(out, ignore_errors=True)
        else:
            print(f"sweep directory kept: {out}")


def report(args, spec, result, timeline, said, t_call, t_return, setting, out) -> None:
    trials = result.trials
    if len(trials) != args.trials or not (trials["status"] == "complete").all():
        raise SystemExit(f"not every trial completed; the timings would be meaningless:\n{trials.to_string()}")
    ray_total = ray_seconds(out / "ray" / spec.name)
    ids = list(trials["trial_id"].astype(str))
    missing = [i for i in ids if i not in timeline.start or i not in timeline.end]
    if missing or timeline.experiment_end is None:
        raise SystemExit(f"the timeline callback missed trials {missing}; no breakdown possible")
    order = sorted(ids, key=lambda i: timeline.start[i])

    compute = dict(zip(ids, trials["train_seconds"] + trials["eval_seconds"], strict=True))
    wall = t_return - t_call
    total_compute = sum(compute.values())
    overhead = wall - total_compute
    first, last = timeline.start[order[0]], max(timeline.end.values())
    before = first - t_call
    inside = sum(timeline.end[i] - timeline.start[i] - compute[i] for i in ids)
    between = sum(timeline.start[b] - timeline.end[a] for a, b in zip(order, order[1:], strict=False))
    after = t_return - last
    n = len(ids)

    print(f"\n{setting}")
    print("trial | compute (s) = train + eval | Ray time_total_s | start→end (s) | gap before (s)")
    prev = t_call
    for i in order:
        rec = trials[trials["trial_id"].astype(str) == i].iloc[0]
        span = timeline.end[i] - timeline.start[i]
        print(
            f"{int(rec['trial']):5d} | {compute[i]:6.1f} = {rec['train_seconds']:5.1f} + {rec['eval_seconds']:4.1f} "
            f"| {ray_total.get(i, float('nan')):6.1f} | {span:6.1f} | {timeline.start[i] - prev:6.1f}"
        )
        prev = timeline.end[i]
    mean_c = total_compute / n
    print(f"compute per trial: mean {mean_c:.1f} s, range {min(compute.values()):.1f}–{max(compute.values()):.1f} s")
    median = sorted(compute.values())[n // 2]
    slow = [i for i in ids if compute[i] > 1.5 * median]
    if slow:
        print(
            f"warning: {len(slow)} trial(s) took over 1.5× the median compute ({median:.1f} s); was the machine busy? "
            "Ray runs trials at nice 15, so any normal-priority process takes their CPU first"
        )
    print(f"\nwall time, run_sweep call → return: {wall:.1f} s; Σ trial compute {total_compute:.1f} s")
    print(f"overhead: {overhead:.1f} s = {overhead / n:.1f} s per trial = {100 * overhead / wall:.1f} % of wall")
    print(f"  before the first trial starts: {before:.1f} s")
    ray_line = next((text for _, text in said if "Ray" in text), "")
    running = next((t for t, text in said if text.startswith("running up to")), None)
    check_s, ray_s = SPENT["check"][1], SPENT["ray start"][1]
    setup = (running - t_call - check_s - ray_s) if running is not None else float("nan")
    launch = (first - running) if running is not None else float("nan")
    print(f"    check (data, model corners, objectives): {check_s:.1f} s")
    print(f"    Ray start ({ray_line}): {ray_s:.1f} s")
    print(f"    MLflow parent run, Optuna study, Tuner set-up: {setup:.1f} s")
    print(f"    Tune start, first suggestion, first worker up: {launch:.1f} s")
    print(
        f"  inside trials, outside train/eval (data load, model build, per-epoch reports and checkpoints, "
        f"final result): {inside:.1f} s = {inside / n:.1f} s per trial"
    )
    if ray_total:
        in_worker = sum(ray_total[i] - compute[i] for i in ids if i in ray_total)
        print(f"    of which inside the worker (Ray time_total_s − compute): {in_worker:.1f} s")
    print(
        f"  between trials (trial end → next worker up: Optuna, MLflow, worker start): {between:.1f} s = "
        f"{between / max(n - 1, 1):.1f} s per gap"
    )
    print(f"  after the last trial (Tune shutdown, collect, Pareto front, artifacts): {after:.1f} s")
    print(f"    of which after Tune returned: {t_return - timeline.experiment_end:.1f} s")
    span = last - first
    steady = span - total_compute
    print(
        f"first trial start → last trial end: {span:.1f} s; overhead in it {steady:.1f} s = "
        f"{steady / n:.1f} s per trial = {100 * steady / span:.1f} %"
    )
    print("driver time in MLflow and Optuna (on_trial_result runs while the trial computes; the rest does not):")
    for name, (calls, seconds) in sorted(SPENT.items()):
        if name.startswith(("MLflow", "Optuna")):
            print(f"  {name}: {seconds:.2f} s in {calls:.0f} calls")

    print("\n| date | machine | trials | compute per trial (s) | wall (s) | Σ compute (s) | overhead (s) | "
          "per trial (s) | % of wall | before 1st trial (s) | inside + between, per trial (s) | after last (s) | "
          "% of 1st start → end |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| {dt.date.today().isoformat()} | {machine()}; {versions()} | {n} | {mean_c:.1f} | {wall:.1f} | "
        f"{total_compute:.1f} | {overhead:.1f} | {overhead / n:.1f} | {100 * overhead / wall:.1f} % | {before:.1f} | "
        f"{(inside + between) / n:.1f} | {after:.1f} | {100 * steady / span:.1f} % |"
    )


if __name__ == "__main__":
    main()
