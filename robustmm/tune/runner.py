"""Run a sweep: check everything, connect to Ray, search with Optuna, track with MLflow, rank.

A sweep directory (`--out`) holds everything needed to inspect and resume it:

    sweep.yaml        the sweep as run (smoke and flag overrides applied)
    sweep.json        where its parts live: MLflow URI and parent run, Ray experiment path, study
    optuna.db         the Optuna study (SQLite; only the driver writes it)
    mlflow.db         MLflow runs when no tracking server is given; artifacts in mlartifacts/
    ray/<name>/       Ray Tune's experiment (trial checkpoints, results) unless --storage is given
    trials.parquet    one row per trial: number, status, split (validation), objectives, params, pareto_rank
    rows.parquet      every grid row of every complete trial, with its trial number
    front.md|.parquet|.png|.html   the Pareto front (also on the MLflow parent run)
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from robustmm import pareto
from robustmm.errors import ConfigError
from robustmm.evaluate import model_cells
from robustmm.experiment import prepare
from robustmm.models.base import build_model
from robustmm.pareto import FrontAxis
from robustmm.results import write_text
from robustmm.tracking import Tracker, resolve_uri, ui_command
from robustmm.train import epoch_metrics, plan_of
from robustmm.tune.callbacks import ProgressCallback, TrackingCallback, trial_number, trial_outcome, trial_params
from robustmm.tune.folder_lock import folder_lock
from robustmm.tune.ray_connect import check_resources, connect_ray
from robustmm.tune.space import SWEEP_SPLIT, SweepSpec, corner_configs, parse_sweep
from robustmm.tune.trainable import train_trial
from robustmm.tune.trial_checkpoint import read_rows

log = logging.getLogger(__name__)

STATE_FILE = "sweep.json"
SPEC_FILE = "sweep.yaml"


@dataclass
class SweepResult:
    out: Path
    trials: pd.DataFrame
    front: pd.DataFrame
    front_markdown: str
    tracking_uri: str
    parent_run_id: str
    interrupted: bool = False


def objective_triples(spec: SweepSpec) -> list[FrontAxis]:
    return [(o.key, o.mode, o.label) for o in spec.objectives]


def check_sweep(spec: SweepSpec) -> None:
    """Everything that can be wrong, found before Ray starts: the data, every corner of the
    space as a model, the objectives against the grid, the early-stopping metric."""
    prep = prepare(spec.run_config())
    modalities = prep.dataset.modalities
    for cfg in corner_configs(spec):
        build_model(cfg.model, modalities, cfg.model_options, num_classes=prep.dataset.num_classes)
        model_cells(cfg.model, prep.cells)  # a model.name choice without a certificate on a certified grid
    for objective in spec.objectives:
        objective.check(prep.cells)
    if spec.early_stopping is not None:
        known = _epoch_metrics(spec, prep)
        if spec.early_stopping.metric not in known:
            raise ConfigError(
                f"early_stopping.metric {spec.early_stopping.metric!r} is not reported every epoch; "
                f"use one of {', '.join(sorted(known))}"
            )


def _epoch_metrics(spec: SweepSpec, prep: Any) -> set[str]:
    """The metric names a trial reports per epoch (its plan's stages, one loss call each)."""
    cfg = spec.run_config()
    model = build_model(cfg.model, prep.dataset.modalities, cfg.model_options, num_classes=prep.dataset.num_classes)
    model = model.to(prep.device)
    return epoch_metrics(plan_of(model, cfg.train, cfg.classifier), model, prep.dataset)


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _open_state(spec: SweepSpec, out: Path, resume: bool) -> dict[str, Any]:
    state_path = out / STATE_FILE
    if resume:
        if not state_path.is_file():
            raise ConfigError(f"--resume: {out} holds no sweep to resume ({STATE_FILE} missing); drop --resume")
        state = json.loads(state_path.read_text())
        before = parse_sweep(yaml.safe_load((out / SPEC_FILE).read_text()))
        if before.raw != spec.raw:
            raise ConfigError(
                f"--resume: the sweep in {out} was started with other settings; resume with the same flags "
                f"(see {out / SPEC_FILE}) or choose another --out"
            )
        return state
    if state_path.exists():
        raise ConfigError(f"{out} already holds a sweep; pass --resume to continue it or choose another --out")
    return {}


def run_sweep(
    spec: SweepSpec,
    out: str | Path,
    *,
    tracking_uri: str | None = None,
    storage: str | None = None,
    resume: bool = False,
    callbacks: list[Any] | None = None,
    verbose: bool = False,
    say: Any = None,
    address: str | None = None,
) -> SweepResult:
    """Run (or resume) the sweep into `out`, holding the folder's lock throughout; returns its
    trials table and Pareto front. `callbacks`: extra Tune callbacks for a fresh run (a resumed
    one gets its saved ones back)."""
    say = say or (lambda text: print(f"[sweep] {text}", file=sys.stderr, flush=True))
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} exists and is not a directory")
    with folder_lock(out):  # one driver per folder, before anything is written into it
        return _run_locked(spec, out, tracking_uri, storage, resume, callbacks, verbose, say, address)


def _run_locked(
    spec: SweepSpec,
    out: Path,
    tracking_uri: str | None,
    storage: str | None,
    resume: bool,
    callbacks: list[Any] | None,
    verbose: bool,
    say: Any,
    address: str | None,
) -> SweepResult:
    from ray import tune

    from robustmm.tune.search import ParetoOptunaSearch

    state = _open_state(spec, out, resume)
    uri = state.get("tracking_uri") if resume and not tracking_uri else resolve_uri(tracking_uri, out)
    say(f"checking the sweep {spec.name!r}: data, {len(spec.params)} parameters, objectives, grid")
    check_sweep(spec)
    say(connect_ray(address))
    check_resources(spec.cpu, spec.gpu)

    out.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(uri, spec.name, artifact_location=(out / "mlartifacts").as_uri())
    if resume:
        parent = tracker.reopen(state["parent_run_id"])
    else:
        write_text(out / SPEC_FILE, spec.to_yaml())
        parent = tracker.start_parent(
            spec.name,
            {"space": spec.raw.get("space", {}), "run": spec.raw.get("run", {}), "sampler": spec.sampler},
            {
                "git_commit": _git_commit(),
                "command": shlex.join(sys.argv),
                "sampler": spec.sampler,
                "objectives": ", ".join(spec.keys),
                "split": SWEEP_SPLIT,
            },
        )
        tracker.log_artifact(parent, out / SPEC_FILE)
        ray_root = storage or str(out / "ray")
        state = {
            "tracking_uri": uri,
            "parent_run_id": parent,
            "storage": ray_root,
            "experiment": spec.name,
            "optuna_storage": f"sqlite:///{out / 'optuna.db'}",
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        write_text(out / STATE_FILE, json.dumps(state, indent=1))
    say(f"MLflow: {uri} (parent run {parent}); open it with: {ui_command(uri)}")

    # objectives come only with a trial's last report; per-epoch reports legitimately lack them
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    # checkpoints every few epochs force experiment snapshots; that is intended, not a warning
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if not verbose:  # our own progress lines instead of Ray's status tables
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        logging.getLogger("ray.tune").setLevel(logging.WARNING)
    trainable = tune.with_resources(tune.with_parameters(train_trial, spec=spec), {"cpu": spec.cpu, "gpu": spec.gpu})
    experiment_path = f"{state['storage'].rstrip('/')}/{state['experiment']}"
    if resume:  # the callbacks, searcher and scheduler come back from the saved experiment
        from ray.tune import Tuner

        if not Tuner.can_restore(experiment_path):
            raise ConfigError(f"--resume: no Ray Tune experiment to restore at {experiment_path}")
        say(f"resuming the Ray Tune experiment at {experiment_path}")
        tuner = Tuner.restore(experiment_path, trainable, resume_unfinished=True, resume_errored=True)
    else:
        searcher = ParetoOptunaSearch(
            spec.define,
            metric=spec.keys,
            mode=spec.modes,
            study_name=spec.name,
            storage=state["optuna_storage"],
            make_sampler=spec.make_sampler,
        )
        search = tune.search.ConcurrencyLimiter(searcher, max_concurrent=spec.max_concurrent)
        scheduler = None
        if spec.early_stopping is not None:
            es = spec.early_stopping
            scheduler = tune.schedulers.ASHAScheduler(
                metric=es.metric,
                mode=es.mode,
                max_t=spec.trial_budget(),
                grace_period=es.grace_period,
                reduction_factor=es.reduction_factor,
            )
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=search,
                scheduler=scheduler,
                num_samples=spec.num_samples,
                time_budget_s=spec.time_budget_s,
                reuse_actors=True,  # a worker keeps torch imported and the data loaded
            ),
            run_config=tune.RunConfig(
                name=state["experiment"],
                storage_path=state["storage"],
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.checkpoint_keep),
                callbacks=[
                    TrackingCallback(uri, spec.name, parent, spec.objectives),
                    ProgressCallback(spec.objectives, spec.num_samples),
                    *(callbacks or []),
                ],
                verbose=2 if verbose else 0,
            ),
        )
    say(f"running up to {spec.num_samples} trials, {spec.max_concurrent} at a time ({spec.sampler} sampler)")
    from robustmm.tune.ray_connect import fit_or_lost  # a lost cluster: one error line, not a traceback

    grid = fit_or_lost(tuner)
    trials, rows = collect(grid, spec, _unfinished(state["optuna_storage"], spec.name))
    result = finish(spec, out, trials, rows, tracker, parent)
    cut_short = bool((trials["status"] == "interrupted").any()) if not trials.empty else False
    result.interrupted = cut_short or len(trials) < _expected_trials(spec)
    tracker.set_tags(parent, {"sweep_state": "interrupted" if result.interrupted else "finished"})
    tracker.end(parent, "KILLED" if result.interrupted else "FINISHED")
    return result


def _expected_trials(spec: SweepSpec) -> int:
    """How many trials a sweep that ran to its end has: num_samples, or the whole grid if smaller.
    Fewer means it was stopped between trials (Ctrl-C, the time budget)."""
    if spec.sampler != "grid":
        return spec.num_samples
    return min(spec.num_samples, math.prod(len(v) for v in spec.grid().values()))


def _unfinished(storage: str, study: str) -> set[int]:
    """Trials the study still holds RUNNING after Tune returned: every trial that ends is told to
    Optuna, so these were cut short by an interruption (Ctrl-C, a time budget)."""
    import optuna

    found = optuna.load_study(study_name=study, storage=storage)
    return {t.number for t in found.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}


def collect(grid: Any, spec: SweepSpec, unfinished: set[int] = frozenset()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ResultGrid -> one row per trial (number, status, objectives, params) and all grid rows.
    `unfinished`: numbers of trials that never ended (the sweep was interrupted)."""
    records, all_rows = [], []
    for result in grid:
        trial = _TrialView(result)
        if trial_number(trial) is None:  # no config saved either: nothing ties it to a study trial
            log.warning("left out a Ray trial without an Optuna trial number (%s)", result.path)
            continue
        status, reason = trial_outcome(trial)
        if trial_number(trial) in unfinished:
            status, reason = "interrupted", "the sweep stopped before this trial ended; continue it with --resume"
        metrics = result.metrics or {}
        record: dict[str, Any] = {
            "trial": trial_number(trial),
            "trial_id": metrics.get("trial_id", ""),
            "status": status,
            "failure_reason": reason,
            "split": SWEEP_SPLIT,
        }
        for o in spec.objectives:
            record[o.key] = float(metrics[o.key]) if status == "complete" and o.key in metrics else float("nan")
        record["train_seconds"] = float(metrics.get("train_seconds", float("nan")))
        record["eval_seconds"] = float(metrics.get("eval_seconds", float("nan")))
        record.update({f"param.{k}": v for k, v in trial_params(trial).items()})
        records.append(record)
        if status == "complete" and result.checkpoint is not None:
            rows = read_rows(result.checkpoint)
            if rows is not None:
                all_rows.append(rows.assign(trial=record["trial"]))
    trials = pd.DataFrame(records)
    if not trials.empty:
        trials = trials.sort_values("trial", kind="stable").reset_index(drop=True)
    rows = pd.concat(all_rows, ignore_index=True) if all_rows else pd.DataFrame()
    return trials, rows


class _TrialView:
    """What trial_outcome/trial_number read, from a ray.tune.Result."""

    def __init__(self, result: Any) -> None:
        self.config = result.config or self._saved_config(result)
        self.last_result = result.metrics or {}
        self.status = "ERROR" if result.error is not None else "TERMINATED"
        self.error = result.error
        self.error_file = None

    @property
    def trial_id(self) -> str:
        return str(self.last_result.get("trial_id", ""))

    @staticmethod
    def _saved_config(result: Any) -> dict[str, Any]:
        """The config Tune wrote into the trial's folder when it started (params.json): a trial
        that ended before its first report (its worker or node died) has no result.config."""
        try:
            with result.filesystem.open_input_stream(f"{result.path}/params.json") as f:
                return json.loads(f.read())
        except (OSError, ValueError, TypeError):
            return {}


def finish(spec: SweepSpec, out: Path, trials: pd.DataFrame, rows: pd.DataFrame, tracker: Tracker, parent: str):
    """Rank the trials, write the front (table, plots) to `out` and the MLflow parent, tag children."""
    objectives = objective_triples(spec)
    ranked = pareto.rank_trials(trials, objectives) if not trials.empty else trials.assign(pareto_rank=[])
    ranked.to_parquet(out / "trials.parquet", index=False)
    if not rows.empty:
        rows.to_parquet(out / "rows.parquet", index=False)
    front = pareto.front(ranked, objectives) if not ranked.empty else ranked
    md = pareto.front_markdown(ranked, objectives, title=f"Pareto front of {spec.name}")
    write_text(out / "front.md", md)
    front.to_parquet(out / "front.parquet", index=False)
    artifacts = [out / "front.md", out / "front.parquet", out / "trials.parquet"]
    if (ranked["status"] == "complete").sum() >= 1:
        artifacts.append(pareto.plot_front_png(ranked, objectives, out / "front.png"))
        title = f"{spec.name}: Pareto front"
        artifacts.append(pareto.plot_front_html(ranked, objectives, out / "front.html", title=title))
    for path in artifacts:
        tracker.log_artifact(parent, path, "pareto")
    children = tracker.children(parent)
    for rec in ranked.to_dict("records"):
        run_id = children.get(str(int(rec["trial"])))
        if run_id is not None:
            rank = int(rec["pareto_rank"]) if rec["status"] == "complete" else "none"
            tracker.set_tags(run_id, {"pareto_rank": rank})
    counts = ranked["status"].value_counts().to_dict() if not ranked.empty else {}
    tracker.log_metrics(parent, {f"trials_{k}": v for k, v in counts.items()} | {"front_size": len(front)}, step=0)
    tracker.set_tags(parent, {"front_trials": ",".join(str(int(t)) for t in front["trial"])})
    return SweepResult(out, ranked, front, md, tracker.uri, parent)


def load_sweep_dir(out: str | Path) -> tuple[SweepSpec, pd.DataFrame]:
    """A finished (or interrupted) sweep directory -> its spec and trials table."""
    out = Path(out)
    if not (out / SPEC_FILE).is_file():
        raise ConfigError(f"{out} is not a sweep directory ({SPEC_FILE} missing); give the --out of a sweep")
    spec = parse_sweep(yaml.safe_load((out / SPEC_FILE).read_text()))
    if not (out / "trials.parquet").is_file():
        raise ConfigError(f"{out} has no trials.parquet yet; the sweep has not finished (resume it with --resume)")
    return spec, pd.read_parquet(out / "trials.parquet")


def picked_config(out: str | Path, number: int) -> dict[str, Any]:
    """The run config of trial `number` of the sweep in `out`, ready for `robustmm run --config`:
    chosen on validation, it evaluates on test."""
    spec, trials = load_sweep_dir(out)
    hit = trials[trials["trial"] == number]
    if hit.empty:
        raise ConfigError(f"trial {number} is not in {out}; its trials: {', '.join(map(str, trials['trial']))}")
    rec = hit.iloc[0].to_dict()
    values = {k.removeprefix("param."): _plain(v) for k, v in rec.items() if k.startswith("param.") and not _nan(v)}
    config = spec.run_config(values).to_dict()
    config["eval"]["split"] = "test"
    return config


def _nan(v: Any) -> bool:
    return isinstance(v, float) and v != v


def _plain(v: Any) -> Any:
    """numpy scalars -> Python scalars (for YAML)."""
    return v.item() if hasattr(v, "item") else v
