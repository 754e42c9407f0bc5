"""The fault scenarios of tests/faults at a larger size, with their figures.

    python bench/faults.py [--trials 8] [--n-train 2000] [--work DIR] [--out bench/faults]
    python bench/faults.py --summary            # OUT/summary.md from OUT/scenarios.jsonl

The sweep: the smoke GMCWD sweep (`search_spaces/gmcwd_weights.yaml --smoke`: 3 + 5 epochs, the
smoke grid, a checkpoint every 2 epochs, TPE seed 0, two trials at a time) on synth-mhd with
`--n-train` samples, `--trials` trials, and a fifth parameter `train.lr` ∈ {1e6, 1e-3 (the
default)} so that some trials diverge at their first steps (OUT/space.yaml holds the space run).
TPE draws its first 10 trials at random in the order they are asked for, so every run of this
sweep hands out the same values under the same numbers, whatever the timing; a resumed sweep
reseeds its sampler, so its trials drawn after a resume are new values. Scenarios, each in its
own folder under --work:

- `reference`: the sweep run to its end, its only faults the diverging trials;
- `worker kills`: the first three complete trials of the reference each get their worker
  SIGKILLed once, at one of the three points of tests/faults/injection.py (before any
  checkpoint, right after its first checkpoint, while evaluating after its last training epoch);
- `driver kills`: `python -m robustmm.cli sweep OUT/space.yaml ...` whose process group is
  SIGKILLed once its study holds 2 COMPLETE trials, resumed with --resume and SIGKILLed again
  once one more trial is COMPLETE, then resumed to its end.

Each scenario's figures are one JSON line of OUT/scenarios.jsonl (rewritten by every run):
trials by status, duplicates and RUNNING leftovers
in every record (tests/faults/fault_checks.py `census`), the trials that hold the reference's
values and of those the ones whose objectives and grid rows equal the reference's, what each
diverged trial left in every record, what each kill hit and where its retry took over, wall
seconds (from starting the scenario's first driver to the end of its last). The sweeps' folders
are deleted at the end unless --work is given.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests" / "faults"), str(REPO / "tests")]  # fault_checks, injection

from fault_checks import census, load_study  # noqa: E402
from injection import POINTS, KillWorkers, retry_took_over  # noqa: E402

OUT = Path(__file__).parent / "faults"
SPACE = REPO / "search_spaces" / "gmcwd_weights.yaml"
NAME = "gmcwd_weights"
KEYS = ["clean_accuracy", "worst_modality_auc_pgd"]
DIVERGES = 1e6
SCENARIOS = ("reference", "worker kills", "driver kills")


def write_space(path: Path) -> Path:
    """The shipped space with `train.lr` ∈ {1e6, 1e-3} added (1e6 diverges at the first steps)."""
    raw = yaml.safe_load(SPACE.read_text())
    raw["space"]["train.lr"] = {"type": "categorical", "choices": [DIVERGES, 0.001]}
    text = f"# {SPACE.relative_to(REPO)} with a fifth parameter whose value 1e6 diverges (bench/faults.py)\n"
    path.write_text(text + yaml.safe_dump(raw, sort_keys=False))
    return path


def sweep_flags(args: argparse.Namespace) -> list[str]:
    return ["--smoke", f"--num-samples={args.trials}", "--max-concurrent=2", f"--set=dataset.n_train={args.n_train}"]


def spec_of(space: Path, flags: list[str]) -> Any:
    """The SweepSpec the CLI builds from `space` and `flags`."""
    from robustmm.tune.command import add_sweep_flags, overrides_from
    from robustmm.tune.space import load_sweep

    parser = argparse.ArgumentParser()
    add_sweep_flags(parser)
    parsed = parser.parse_args(flags)
    return load_sweep(space, smoke=parsed.smoke, overrides=overrides_from(parsed))


def drive(space: Path, flags: list[str], folder: Path, plan: dict[int, str] | None) -> None:
    """A sweep driver in this process (`--drive`): the sweep into `folder`, with the worker kills
    of `plan` (trial number -> point); the kills' record goes to folder/kills.json."""
    from robustmm.tune.runner import run_sweep

    spec = spec_of(space, flags)
    callbacks = []
    if plan:
        killer = KillWorkers(plan, ("classifier", spec.run_config().classifier.epochs))
        callbacks.append(killer)
    run_sweep(spec, folder, callbacks=callbacks)
    if plan:
        record = killer.record()
        record["took_over"] = {n: retry_took_over(k, killer.seen[n]) for n, k in killer.killed.items()}
        (folder / "kills.json").write_text(json.dumps(record, indent=1))


def env() -> dict[str, str]:
    out = dict(os.environ, CI="true", PYTHONUNBUFFERED="1")
    out.pop("RAY_ADDRESS", None)
    return out


def complete_in_study(folder: Path) -> int:
    """How many trials the sweep's study holds COMPLETE (0 before the driver created it)."""
    import optuna

    try:
        study = optuna.load_study(study_name=NAME, storage=f"sqlite:///{folder / 'optuna.db'}")
        return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    except Exception:  # no study yet, or the driver is writing it; asked again a moment later
        return 0


def run_driver(
    cmd: list[str], log: Path, folder: Path, kill_at: int | None = None, timeout: float = 3600
) -> dict[str, Any]:
    """Run a driver (its own process group) into `log`; SIGKILL the group once the study holds
    `kill_at` COMPLETE trials (None: let it end). Returns what happened."""
    start = time.monotonic()
    at_start = complete_in_study(folder) if (folder / "optuna.db").is_file() else 0
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=f, stderr=f, start_new_session=True)
    deadline = start + timeout
    killed = False
    while time.monotonic() < deadline and proc.poll() is None:
        if kill_at is not None and complete_in_study(folder) >= kill_at:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started, no clean-up
            killed = True
            break
        time.sleep(0.5)
    if proc.poll() is None and not killed:
        os.killpg(proc.pid, signal.SIGKILL)
    rc = proc.wait()
    return {
        "rc": rc,
        "killed": killed,
        "complete_in_study_at_start": at_start,
        "complete_in_study_at_end": complete_in_study(folder),
        "seconds": round(time.monotonic() - start, 1),
    }


def divergence(folder: Path) -> dict[str, Any]:
    """What each trial with lr 1e6 left in every record: failed with its reason in trials.parquet,
    unranked and off the front, FAIL in the study, FAILED in MLflow with the reason."""
    from mlflow import MlflowClient

    trials = pd.read_parquet(folder / "trials.parquet")
    front = set(pd.read_parquet(folder / "front.parquet")["trial"])
    states = {t.number: t.state.name for t in load_study(folder, NAME).trials}
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(NAME).experiment_id])
    child = {int(r.data.tags["trial_number"]): r for r in runs if r.data.tags.get("robustmm.kind") == "trial"}
    out = []
    for r in trials[trials["param.train.lr"] == DIVERGES].to_dict("records"):
        n, run = int(r["trial"]), child.get(int(r["trial"]))
        out.append(
            {
                "trial": n,
                "status": r["status"],
                "reason": r["failure_reason"],
                "pareto_rank": int(r["pareto_rank"]),
                "on_front": n in front,
                "study": states.get(n),
                "mlflow": run.info.status if run else None,
                "mlflow_reason_tag": bool(run and run.data.tags.get("failure_reason") == r["failure_reason"]),
            }
        )
    ok = all(
        d["status"] == "failed"
        and "loss became nan" in d["reason"]
        and d["pareto_rank"] == 0
        and not d["on_front"]
        and d["study"] == "FAIL"
        and d["mlflow"] == "FAILED"
        and d["mlflow_reason_tag"]
        for d in out
    )
    return {"trials": out, "failed_everywhere": ok}


def machine() -> str:
    import mlflow
    import optuna
    import ray
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"CPU {platform.machine()}, {os.cpu_count()} cores, {gpu}; Ray {ray.__version__}, Optuna {optuna.__version__}, "
        f"MLflow {mlflow.__version__}, torch {torch.__version__}"
    )


def run_scenario(name: str, args: argparse.Namespace, space: Path, work: Path) -> dict[str, Any]:
    flags = sweep_flags(args)
    folder = work / name.replace(" ", "_")
    reference = work / "reference"
    me = [sys.executable, str(Path(__file__).resolve()), "--drive", str(folder), "--space", str(space), "--"]
    load_before = os.getloadavg()[0]
    start = time.monotonic()
    extra: dict[str, Any] = {}
    if name == "reference":
        extra["driver"] = run_driver([*me, *flags], work / "reference.log", folder)
    elif name == "worker kills":
        ref = pd.read_parquet(reference / "trials.parquet")
        complete = sorted(int(n) for n in ref.loc[ref["status"] == "complete", "trial"])
        plan = dict(zip(complete, POINTS, strict=False))
        me.insert(-1, f"--plan={json.dumps(plan)}")
        extra["driver"] = run_driver([*me, *flags], work / "worker_kills.log", folder)
        extra["kills"] = json.loads((folder / "kills.json").read_text())
        extra["kills"].pop("seen")  # every report: too long for a line; `took_over` says what matters
    else:
        cli = [sys.executable, "-m", "robustmm.cli", "sweep", str(space), *flags, f"--out={folder}"]
        runs = [run_driver(cli, work / "driver_kills.1.log", folder, kill_at=2)]
        again = runs[-1]["complete_in_study_at_end"] + 1  # one more trial complete, then kill again
        runs.append(run_driver([*cli, "--resume"], work / "driver_kills.2.log", folder, kill_at=again))
        runs.append(run_driver([*cli, "--resume"], work / "driver_kills.3.log", folder))
        extra["drivers"] = runs
    wall = time.monotonic() - start
    figures = census(folder, NAME, KEYS, reference if name != "reference" else None)
    line: dict[str, Any] = {
        "scenario": name,
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "load_average_before": round(load_before, 2),
        "trials_asked": args.trials,
        "n_train": args.n_train,
        "wall_s": round(wall, 1),
        **figures,
        "divergence": divergence(folder),
        **extra,
    }
    if name != "reference":
        line["objectives_equal"] = bool(figures["same_values_as_reference"]) and (
            figures["equal_to_reference"] == figures["same_values_as_reference"]
        )
    return line


def summary(out: Path) -> str:
    lines = [json.loads(x) for x in (out / "scenarios.jsonl").read_text().splitlines() if x.strip()]
    first = lines[0]
    md = [
        "# Fault scenarios at a larger size (`bench/faults.py`)",
        "",
        f"{first['date']}, {first['machine']}. The smoke GMCWD sweep on synth-mhd with {first['n_train']} samples, "
        f"{first['trials_asked']} trials two at a time, `train.lr` ∈ {{1e6, 1e-3}} (`space.yaml`).",
        "",
        "| scenario | trials | complete | failed (diverged) | duplicates | RUNNING left | records agree "
        "| diverged trials failed everywhere | same values as reference | objectives + rows equal | wall (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for x in lines:
        same, equal = x.get("same_values_as_reference"), x.get("equal_to_reference")
        same_text = "–" if same is None else f"{len(same)} of {x['trials']}"
        equal_text = "–" if equal is None else f"{len(equal)} of {len(same)}"
        agree = "yes" if x["records_agree"] else "no"
        diverged = f"{'yes' if x['divergence']['failed_everywhere'] else 'no'} ({len(x['divergence']['trials'])})"
        md.append(
            f"| {x['scenario']} | {x['trials']} | {x['status'].get('complete', 0)} | {x['status'].get('failed', 0)} "
            f"| {sum(x['duplicates'].values())} | {sum(x['running'].values())} | {agree} | {diverged} "
            f"| {same_text} | {equal_text} | {x['wall_s']} |"
        )
    for x in lines:
        if "kills" in x:
            md += ["", "Worker kills (trial, point, what the killed worker reported, where its retry took over):", ""]
            md += ["| trial | point | killed at (s) | iterations reported before | retry's iterations | complete |"]
            md += ["| --- | --- | --- | --- | --- | --- |"]
            for n, k in sorted(x["kills"]["killed"].items(), key=lambda kv: int(kv[0])):
                t = x["kills"]["took_over"][n]
                md.append(
                    f"| {n} | {k['point']} | {k['at_s']} | {t['killed_reported']} | {t['retry_iterations']} "
                    f"| {t['retry_status'] == 'complete'} |"
                )
            if x["kills"]["missed"]:
                md += ["", f"Missed kills: {x['kills']['missed']}"]
        if "drivers" in x:
            md += ["", "Driver runs (the process group SIGKILLed, then `--resume`):", ""]
            md += ["| run | COMPLETE in the study at its start | at its end | SIGKILLed | exit code | seconds |"]
            md += ["| --- | --- | --- | --- | --- | --- |"]
            for i, d in enumerate(x["drivers"], 1):
                done = f"{d['complete_in_study_at_start']} | {d['complete_in_study_at_end']}"
                md.append(f"| {i} | {done} | {d['killed']} | {d['rc']} | {d['seconds']} |")
    md += ["", "Duplicates and RUNNING leftovers, per record, are in `scenarios.jsonl`.", ""]
    return "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--work", type=Path, help="where the sweeps' folders go (kept); default: a temporary directory")
    p.add_argument("--summary", action="store_true", help="only write OUT/summary.md from OUT/scenarios.jsonl")
    p.add_argument("--drive", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--space", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--plan", help=argparse.SUPPRESS)
    args, rest = p.parse_known_args(argv)
    if args.drive:  # a driver process started by this script
        plan = {int(k): v for k, v in json.loads(args.plan).items()} if args.plan else None
        drive(args.space, [a for a in rest if a != "--"], args.drive, plan)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summary:
        work = args.work or Path(tempfile.mkdtemp(prefix="robustmm-faults-"))
        work.mkdir(parents=True, exist_ok=True)
        space = write_space(args.out / "space.yaml")
        jsonl = args.out / "scenarios.jsonl"
        jsonl.write_text("")
        try:
            for name in SCENARIOS:
                print(f"[faults] {name} ...", file=sys.stderr, flush=True)
                line = run_scenario(name, args, space, work)
                with open(jsonl, "a") as f:
                    f.write(json.dumps(line) + "\n")
                brief = {k: line[k] for k in ("trials", "status", "wall_s")}
                print(f"[faults] {name}: {json.dumps(brief)}", file=sys.stderr, flush=True)
        finally:
            if args.work is None:
                shutil.rmtree(work, ignore_errors=True)
    text = summary(args.out)
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
