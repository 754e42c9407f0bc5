"""Run a sweep: check everything, connect to Ray, search with Optuna, track with MLflow, rank.

A sweep directory (`--out`) holds everything needed to inspect and resume it:

    sweep.yaml        the sweep as run (smoke and flag overrides applied)
    sweep.json        where its parts live, relative to the folder (tune/sweep_folder.py)
    optuna.db         the Optuna study (SQLite; only the driver writes it; metric names = the
                      objectives, each trial's MLflow run id and rows path as user attrs)
    mlflow.db         MLflow runs when no tracking server is given; artifacts in mlartifacts/
    ray/<name>/       Ray Tune's experiment (trial checkpoints, results) unless --storage is given
    records/          one record per ended trial (status, objectives, rows): with the study, the trials table
    error.log         the traceback of an unexpected error that stopped the sweep
    libraries.log     Ray's, Ray Tune's, MLflow's and Optuna's warnings and errors (trial tracebacks), unless -v
    trials.parquet    one row per trial: number, status, split (validation), objectives, params, pareto_rank
    rows.parquet      every grid row of every complete trial, with its trial number
    front.md|.parquet|.png|.html   the Pareto front (also on the MLflow parent run)
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from robustmm import pareto
from robustmm.errors import ConfigError, RobustMMError, SweepStopped
from robustmm.evaluate import model_cells
from robustmm.experiment import prepare
from robustmm.models.base import build_model
from robustmm.pareto import FrontAxis
from robustmm.redact import redact
from robustmm.results import write_text
from robustmm.tracking import (
    NOTE_TAG,
    Tracker,
    move_artifact_root,
    resolve_uri,
    run_table_url,
    source_tags,
    ui_command,
)
from robustmm.train import epoch_metrics, plan_of
from robustmm.tune import sweep_folder
from robustmm.tune.callbacks import ProgressCallback, TrackingCallback
from robustmm.tune.folder_lock import folder_lock
from robustmm.tune.library_logs import FILE as LIBRARY_LOG
from robustmm.tune.library_logs import LibraryLogs, libraries_to_file
from robustmm.tune.mlflow_views import FRONT_TABLE, experiment_note, parent_note, trial_note
from robustmm.tune.ray_connect import check_resources, connect_ray, fit_or_lost
from robustmm.tune.records import RecordCallback, read_records, trial_links
from robustmm.tune.space import SWEEP_SPLIT, SweepSpec, corner_configs, parse_sweep
from robustmm.tune.sweep_folder import (
    ARTIFACTS,
    OWN_OPTUNA,
    OWN_TRACKING,
    SPEC_FILE,
    STATE_FILE,
    SweepFolder,
    activated,
)
from robustmm.tune.trainable import train_trial

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    out: Path
    trials: pd.DataFrame
    front: pd.DataFrame
    front_markdown: str
    tracking_uri: str
    parent_run_id: str
    interrupted: bool = False
    experiment_id: str = ""


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


def _source() -> dict[str, str]:
    """MLflow's source tags for the sweep's runs: the script or command that started it (relative to
    the working directory when inside it) and the git commit."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("robustmm")
    try:
        name = str(script.resolve().relative_to(Path.cwd()))
    except ValueError:
        name = script.name
    return source_tags(name, _git_commit())


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _open_state(spec: SweepSpec, out: Path, resume: bool) -> dict[str, Any]:
    from robustmm.files import read_json, read_yaml

    state_path = out / STATE_FILE
    if resume:
        if not state_path.is_file():
            raise ConfigError(f"--resume: {out} holds no sweep to resume ({STATE_FILE} missing); drop --resume")
        damaged = "the sweep folder is damaged: start the sweep afresh in another --out"
        state = read_json(state_path, "--resume: sweep state", hint=damaged)
        lacking = [k for k in ("experiment", "parent_run_id") if k not in state]
        if lacking or not all(isinstance(state[k], str) for k in ("experiment", "parent_run_id")):
            raise ConfigError(
                f"--resume: sweep state {str(state_path)!r} lacks {', '.join(lacking) or 'valid values'}; {damaged}"
            )
        before = parse_sweep(read_yaml(out / SPEC_FILE, "--resume: the sweep's settings", hint=damaged))
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
    one gets its saved ones back). Whatever stops it after its MLflow run exists — an error, a
    signal, a full disk — leaves no trial or run RUNNING and the folder resumable."""
    say = say or (lambda text: print(f"[sweep] {text}", file=sys.stderr, flush=True))
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} exists and is not a directory")
    with folder_lock(out), libraries_to_file(verbose, say) as logs:  # one driver per folder, before anything is written
        return _run_locked(spec, out, tracking_uri, storage, resume, callbacks, verbose, say, address, logs)


def _folder(
    spec: SweepSpec, out: Path, state: dict[str, Any], tracking_uri: str | None, storage: str | None
) -> SweepFolder:
    """Where the sweep's parts live: those of a resumed sweep as its sweep.json says (relative
    to where the folder is now), a fresh one's from the flags."""
    if state:
        folder = SweepFolder.load(out, state)
        if tracking_uri:
            folder.use_tracking(resolve_uri(tracking_uri, out))
        elif folder.needs_credentials():
            given = os.environ.get("MLFLOW_TRACKING_URI", "")
            if not given or redact(given) != folder.tracking:
                raise ConfigError(
                    f"--resume: the sweep tracks into {folder.tracking}, whose credentials are not stored; "
                    "pass --tracking-uri with them again (or set MLFLOW_TRACKING_USERNAME and _PASSWORD)"
                )
            folder.use_tracking(given)
        return folder
    folder = SweepFolder(out, experiment=spec.name, storage=storage)
    folder.use_tracking(resolve_uri(tracking_uri, out))
    return folder


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
    logs: LibraryLogs | None,
) -> SweepResult:
    folder = _folder(spec, out, _open_state(spec, out, resume), tracking_uri, storage)
    say(f"checking the sweep {spec.name!r}: data, {len(spec.params)} parameters, objectives, grid")
    check_sweep(spec)
    say(connect_ray(address))
    check_resources(spec.cpu, spec.gpu)

    out.mkdir(parents=True, exist_ok=True)
    if logs is not None:
        logs.write_to(out / LIBRARY_LOG)
    if resume and folder.own_tracking and move_artifact_root(out / OWN_TRACKING, spec.name, folder.artifact_root):
        say(f"the sweep folder was moved or copied; its MLflow artifacts are now kept in {out / ARTIFACTS}")
    tracker = Tracker(folder.tracking_uri, spec.name, artifact_location=folder.artifact_root)
    parent = None
    with activated(folder), _sigterm_as_ctrl_c():
        try:
            parent = _open_parent(spec, folder, tracker, resume)
            shown, ui = redact(folder.tracking_uri), redact(ui_command(folder.tracking_uri))
            say(f"MLflow: {shown} (parent run {parent}); open it with: {ui}")
            say(f"MLflow run table: {run_table_url(folder.tracking_uri, tracker.experiment_id)}")
            return _search(spec, folder, tracker, parent, resume, callbacks, verbose, say)
        except BaseException as e:
            known = isinstance(e, (RobustMMError, KeyboardInterrupt, SystemExit))
            error = e if known else _stopped_error(e, folder)
            _close_open(spec, folder, tracker, parent, error, say)
            if known:
                raise
            raise error from e


def _open_parent(spec: SweepSpec, folder: SweepFolder, tracker: Tracker, resume: bool) -> str:
    """The sweep's MLflow parent run: reopened on resume, else made, with sweep.json naming it."""
    if resume:
        return tracker.reopen(folder.parent_run_id)
    write_text(folder.out / SPEC_FILE, spec.to_yaml())
    tracker.describe(experiment_note(spec))
    parent = tracker.start_parent(
        spec.name,
        {"space": spec.raw.get("space", {}), "run": spec.raw.get("run", {}), "sampler": spec.sampler},
        {
            **_source(),
            NOTE_TAG: parent_note(spec),
            "command": redact(shlex.join(sys.argv)),
            "sampler": spec.sampler,
            "objectives": ", ".join(spec.keys),
            "split": SWEEP_SPLIT,
        },
    )
    folder.parent_run_id = parent
    folder.save()
    tracker.log_artifact(parent, folder.out / SPEC_FILE)
    return parent


def _search(
    spec: SweepSpec,
    folder: SweepFolder,
    tracker: Tracker,
    parent: str,
    resume: bool,
    callbacks: list[Any] | None,
    verbose: bool,
    say: Any,
) -> SweepResult:
    from ray import tune

    # objectives come only with a trial's last report; per-epoch reports legitimately lack them
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    # checkpoints every few epochs force experiment snapshots; that is intended, not a warning
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if not verbose:  # our own progress lines instead of Ray's status tables
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    trainable = tune.with_resources(tune.with_parameters(train_trial, spec=spec), {"cpu": spec.cpu, "gpu": spec.gpu})
    tuner, left = None, spec.num_samples
    if resume:  # the callbacks, searcher and scheduler come back from the saved experiment
        tuner, why = _restore(folder.experiment_path, trainable)
        if tuner is not None:
            say(f"resuming the Ray Tune experiment at {folder.experiment_path}")
        else:
            left = _continue_study(spec, folder, why, say)
    if tuner is None and left > 0:
        tuner = _new_tuner(spec, folder, trainable, parent, left, _expected_trials(spec) - left, callbacks, verbose)
    if tuner is not None:
        say(f"running up to {left} trials, {spec.max_concurrent} at a time ({spec.sampler} sampler)")
        fit_or_lost(tuner)  # a lost cluster: one error line, not a traceback
    trials, rows = collect(spec, folder)
    result = finish(spec, folder.out, trials, rows, tracker, parent)
    cut_short = bool((trials["status"] == "interrupted").any()) if not trials.empty else False
    result.interrupted = cut_short or len(trials) < _expected_trials(spec)
    if result.interrupted:
        _close_open(spec, folder, tracker, parent, KeyboardInterrupt(), say)
    else:
        tracker.set_tags(parent, {"sweep_state": "finished"})
        tracker.end(parent, "FINISHED")
    return result


def _restore(path: str, trainable: Any) -> tuple[Any, str]:
    """Ray Tune's saved experiment at `path` as a Tuner, or None and why it cannot be read."""
    from ray.tune import Tuner

    if not Tuner.can_restore(path):
        return None, f"no Ray Tune experiment at {path}"
    why = _unreadable_ray_state(path) or _moved_ray_state(path)
    if why:
        return None, why
    try:
        return Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True), ""
    except Exception as e:  # a truncated or foreign tuner.pkl
        return None, f"{type(e).__name__}: {_first_line(e)}"


def _unreadable_ray_state(path: str) -> str:
    """Why the newest snapshot files of a local Ray Tune experiment cannot be read ('' if they
    can). Ray reads them only inside Tuner.fit; a write cut short (a full disk) leaves them
    truncated. Remote storage is left to Ray."""
    import ray.cloudpickle as pickle

    root = Path(path)
    if "://" in path or not root.is_dir():
        return ""
    for pattern, load in (
        ("experiment_state-*.json", json.loads),
        ("searcher-state-*.pkl", lambda b: json.loads(b) if b[:1] == b"{" else pickle.loads(b)),  # ours is JSON
        ("search_gen_state-*.json", pickle.loads),
    ):
        found = sorted(root.glob(pattern))
        if not found:
            continue
        try:
            load(found[-1].read_bytes())
        except Exception as e:
            return f"{found[-1].name} is unreadable ({type(e).__name__}: {_first_line(e)})"
    return ""


def _moved_ray_state(path: str) -> str:
    """Why a local Ray Tune experiment cannot be restored where it is now ('' if it can): one
    saved at another path (a moved or copied sweep folder). Ray restores its trials at the new
    place, but its search state keeps the old storage path for the trials it creates after the
    restore, which would write into the original folder."""
    root = Path(path)
    found = sorted(root.glob("search_gen_state-*.json")) if "://" not in path and root.is_dir() else []
    if found and str(root.parent).encode() not in found[-1].read_bytes():
        return "it was saved in another place: the sweep folder was moved or copied"
    return ""


def _continue_study(spec: SweepSpec, folder: SweepFolder, why: str, say: Any) -> int:
    """Ray's state is lost: the Optuna study carries on in a new Ray experiment. Its finished
    trials stand (their records are in the folder), its unfinished ones go back to its queue to
    run again under their numbers. Returns how many trials are left to run."""
    from optuna.storages import RDBStorage
    from optuna.trial import TrialState

    from robustmm.tune.search import requeue, trial_numbers

    storage = RDBStorage(folder.optuna_url)
    requeue(storage, spec.name, set())
    ended = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    done = len(trial_numbers(storage, spec.name, ended))
    folder.ray_experiment = f"{spec.name}.resumed-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.save()
    say(
        f"Ray's experiment cannot be restored ({why}); continuing the Optuna study in a new Ray "
        f"experiment ({folder.ray_experiment}): {done} ended trials are kept, unfinished ones run again"
    )
    return max(_expected_trials(spec) - done, 0)


def _new_tuner(
    spec: SweepSpec,
    folder: SweepFolder,
    trainable: Any,
    parent: str,
    num_samples: int,
    ended: int,
    callbacks: list[Any] | None,
    verbose: bool,
) -> Any:
    from ray import tune

    from robustmm.tune.search import ParetoOptunaSearch

    searcher = ParetoOptunaSearch(
        spec.define,
        metric=spec.keys,
        mode=spec.modes,
        study_name=spec.name,
        storage=sweep_folder.optuna_url,
        make_sampler=spec.make_sampler,
        links=trial_links,
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
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=search,
            scheduler=scheduler,
            num_samples=num_samples,
            time_budget_s=spec.time_budget_s,
            reuse_actors=True,  # a worker keeps torch imported and the data loaded
        ),
        run_config=tune.RunConfig(
            name=folder.ray_experiment,
            storage_path=folder.ray_storage,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.checkpoint_keep),
            callbacks=[
                RecordCallback(spec.objectives),
                TrackingCallback(
                    sweep_folder.tracking_uri, spec.name, parent, spec.objectives, spec=spec, source=_source()
                ),
                ProgressCallback(spec.objectives, spec.num_samples, ended=ended),
                *(callbacks or []),
            ],
            verbose=2 if verbose else 0,
        ),
    )


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Any:
    """A SIGTERM (a scheduler, `kill`) stops the sweep as Ctrl-C does: Ray Tune saves and stops,
    the open trials are marked, the folder stays resumable."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _close_open(
    spec: SweepSpec, folder: SweepFolder, tracker: Tracker, parent: str | None, error: BaseException, say: Any
) -> None:
    """The sweep stopped (interrupted, or an error): no record is left RUNNING. The study's open
    trials go back to its queue, their MLflow runs and the parent end KILLED (interrupted) or
    FAILED (an error); each step is tried even when another fails (a full disk), and what could
    not be marked is said — `--resume` handles those too."""
    from optuna.storages import RDBStorage

    from robustmm.tune.search import stop_open

    interrupted = not isinstance(error, Exception)  # Ctrl-C, SIGTERM, SystemExit
    reason = "the sweep was interrupted" if interrupted else f"the sweep stopped: {redact(_first_line(error))}"
    status = "KILLED" if interrupted else "FAILED"

    def study() -> None:
        if (folder.out / OWN_OPTUNA).is_file():
            stop_open(RDBStorage(folder.optuna_url), spec.name, reason)

    def trials() -> None:
        tracker.end_open_children(parent, "KILLED", {"trial_status": "interrupted", "failure_reason": reason})

    def sweep() -> None:
        tracker.set_tags(parent, {"sweep_state": "interrupted" if interrupted else "failed", "stopped_by": reason})
        tracker.end(parent, status)

    steps = [("the Optuna study's open trials", study)]
    if parent is not None:
        steps += [("the MLflow runs", trials), ("the sweep's run", sweep)]
    for what, step in steps:
        try:
            step()
        except Exception as e:
            say(f"could not mark {what} as stopped ({type(e).__name__}: {_first_line(e)}); --resume will")


def _stopped_error(error: BaseException, folder: SweepFolder) -> SweepStopped:
    """The one line that says why the sweep stopped and that it can be continued."""
    again = "then continue the sweep: the same command plus --resume"
    cause = "fix the cause, " + again
    full = _find(error, _disk_full)
    if full is not None:
        where = getattr(full, "filename", None) or folder.out
        return SweepStopped(f"the disk is full (no space left writing in {where}); free space, {again}")
    oserror = _find(error, lambda e: isinstance(e, OSError) and e.errno is not None)
    if oserror is not None:
        where = getattr(oserror, "filename", None) or folder.out
        return SweepStopped(f"{oserror.strerror} ({where}); the folder is kept: {cause}")
    root = _root(error)
    log_file = folder.out / "error.log"
    try:
        log_file.write_text(redact("".join(traceback.format_exception(error))))
        details = f"the traceback is in {log_file}"
    except OSError:
        details = "no traceback could be written"
    return SweepStopped(
        f"the sweep stopped on an unexpected error ({type(root).__name__}: {redact(_first_line(root))}); "
        f"{details}; the folder is kept: {cause}"
    )


def _disk_full(error: BaseException) -> bool:
    """A write that found no space: an OSError (also as Ray relays a worker's), or SQLite's."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    text = str(error)
    return "No space left on device" in text or "database or disk is full" in text


def _find(error: BaseException, match: Any) -> BaseException | None:
    """The first exception in `error`'s chain (causes, contexts) that `match`es."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if match(error):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _root(error: BaseException) -> BaseException:
    """The innermost exception of `error`'s chain (Ray wraps a callback's error in a TuneError
    whose text is a traceback)."""
    seen = {id(error)}
    while (inner := error.__cause__ or error.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        error = inner
    return error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def _expected_trials(spec: SweepSpec) -> int:
    """How many trials a sweep that ran to its end has: num_samples, or the whole grid if smaller.
    Fewer means it was stopped between trials (Ctrl-C, the time budget)."""
    if spec.sampler != "grid":
        return spec.num_samples
    return min(spec.num_samples, math.prod(len(v) for v in spec.grid().values()))


def collect(spec: SweepSpec, folder: SweepFolder) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per trial of the Optuna study (number, status, objectives, params) and the grid
    rows of every complete one: how a trial ended comes from its record in the folder, a trial
    without one never ended (the sweep was interrupted) or lost it."""
    import optuna

    records = read_records(folder.records)
    study = optuna.load_study(study_name=spec.name, storage=folder.optuna_url)
    entries, all_rows = [], []
    for t in study.get_trials(deepcopy=False):
        record, rows = records.get(t.number, (None, None))
        if record is None:
            record = _from_study(t, spec)
        entry = {k: v for k, v in record.items() if k != "params"}
        entry.update({f"param.{k}": v for k, v in record.get("params", {}).items()})
        entries.append(entry)
        if rows is not None and entry["status"] == "complete":
            all_rows.append(rows.assign(trial=t.number))
    trials = pd.DataFrame(entries)
    if not trials.empty:
        trials = trials.sort_values("trial", kind="stable").reset_index(drop=True)
    rows = pd.concat(all_rows, ignore_index=True) if all_rows else pd.DataFrame()
    return trials, rows


def _from_study(t: Any, spec: SweepSpec) -> dict[str, Any]:
    """A trial's entry from the study alone (no record: it never ended, or its record was lost)."""
    from optuna.trial import TrialState

    from robustmm.tune.search import CONFIG_ATTR

    status = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}.get(
        t.state, "interrupted"
    )
    reason = {
        "interrupted": "the sweep stopped before this trial ended; continue it with --resume",
        "failed": "the trial failed (its record was lost)",
    }.get(status, "")
    values = list(t.values) if t.state == TrialState.COMPLETE and t.values else [math.nan] * len(spec.objectives)
    entry: dict[str, Any] = {"trial": t.number, "trial_id": "", "status": status, "failure_reason": reason}
    entry["split"] = SWEEP_SPLIT
    entry.update({o.key: float(v) for o, v in zip(spec.objectives, values, strict=True)})
    entry.update(train_seconds=math.nan, eval_seconds=math.nan)
    entry["params"] = dict(t.user_attrs.get(CONFIG_ATTR) or t.params)
    return entry


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
    tracker.log_table(parent, front, FRONT_TABLE)
    children = tracker.children(parent)
    for rec in ranked.to_dict("records"):
        run_id = children.get(str(int(rec["trial"])))
        if run_id is not None:
            rank = int(rec["pareto_rank"]) if rec["status"] == "complete" else "none"
            note = trial_note(spec, int(rec["trial"]), _sampled(rec), rec)
            tracker.set_tags(run_id, {"pareto_rank": rank, NOTE_TAG: note})
    counts = ranked["status"].value_counts().to_dict() if not ranked.empty else {}
    tracker.log_metrics(parent, {f"trials_{k}": v for k, v in counts.items()} | {"front_size": len(front)}, step=0)
    front_trials = ",".join(str(int(t)) for t in front["trial"])
    tracker.set_tags(parent, {"front_trials": front_trials, NOTE_TAG: parent_note(spec, md)})
    return SweepResult(out, ranked, front, md, tracker.uri, parent, experiment_id=tracker.experiment_id)


def load_sweep_dir(out: str | Path) -> tuple[SweepSpec, pd.DataFrame]:
    """A finished (or interrupted) sweep directory -> its spec and trials table."""
    from robustmm.files import read_parquet, read_yaml

    out = Path(out)
    if not (out / SPEC_FILE).is_file():
        raise ConfigError(f"{out} is not a sweep directory ({SPEC_FILE} missing); give the --out of a sweep")
    spec = parse_sweep(read_yaml(out / SPEC_FILE, "the sweep's settings", hint="it is damaged; restore it"))
    if not (out / "trials.parquet").exists():
        raise ConfigError(f"{out} has no trials.parquet yet; the sweep has not finished (resume it with --resume)")
    rerank = f"the sweep folder is damaged; `robustmm sweep ... --resume --out {out}` writes it again"
    trials = read_parquet(out / "trials.parquet", "the sweep's trials table", hint=rerank)
    lacking = [c for c in ("trial", "status", *spec.keys) if c not in trials.columns]
    if lacking:
        raise ConfigError(
            f"the sweep's trials table {str(out / 'trials.parquet')!r} lacks column(s) {', '.join(lacking)}; {rerank}"
        )
    return spec, trials


def picked_config(out: str | Path, number: int) -> dict[str, Any]:
    """The run config of trial `number` of the sweep in `out`, ready for `robustmm run --config`:
    chosen on validation, it evaluates on test."""
    spec, trials = load_sweep_dir(out)
    hit = trials[trials["trial"] == number]
    if hit.empty:
        raise ConfigError(f"trial {number} is not in {out}; its trials: {', '.join(map(str, trials['trial']))}")
    rec = hit.iloc[0].to_dict()
    config = spec.run_config(_sampled(rec)).to_dict()
    config["eval"]["split"] = "test"
    return config


def _sampled(rec: dict[str, Any]) -> dict[str, Any]:
    """A trials-table row's sampled values by key (its `param.` columns that are set), as plain
    Python scalars."""
    return {k.removeprefix("param."): _plain(v) for k, v in rec.items() if k.startswith("param.") and not _nan(v)}


def _nan(v: Any) -> bool:
    return isinstance(v, float) and v != v


def _plain(v: Any) -> Any:
    """numpy scalars -> Python scalars (for YAML)."""
    return v.item() if hasattr(v, "item") else v
