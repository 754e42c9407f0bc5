"""optuna-dashboard (the `dashboard` extra) on a sweep's study, through its JSON API on 127.0.0.1:
the objectives' names label the axes, and each trial names its MLflow run.

The study is written by the sweep's own code path without Ray: the searcher with the links the
runner gives it, under an active sweep folder with its MLflow parent and child runs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from robustmm.tracking import Tracker
from robustmm.tune import sweep_folder
from robustmm.tune.records import MLFLOW_RUN_ATTR, ROWS_ATTR, rows_path, trial_links
from robustmm.tune.search import ParetoOptunaSearch
from robustmm.tune.space import parse_sweep
from robustmm.tune.sweep_folder import SweepFolder, activated
from robustmm.tune.trainable import NUMBER_KEY

from sweep_helpers import tiny_sweep, wait_until

pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is not installed (pip install -e '.[dashboard]')")

DONE = {"trial_status": "complete", "clean_accuracy": 0.8, "worst_modality_auc_pgd": 0.6}


def write_study(out: Path):
    """Two trials as a sweep records them: one complete, one failed; -> (spec, trial number -> run id)."""
    spec = parse_sweep(tiny_sweep(sampler={"name": "random", "seed": 0}))
    folder = SweepFolder(out, experiment=spec.name)
    folder.use_tracking(f"sqlite:///{out / 'mlflow.db'}")
    tracker = Tracker(folder.tracking_uri, spec.name, artifact_location=folder.artifact_root)
    folder.parent_run_id = tracker.start_parent(spec.name, {}, {})
    runs = {}
    with activated(folder):
        s = ParetoOptunaSearch(
            spec.define,
            metric=spec.keys,
            mode=spec.modes,
            study_name=spec.name,
            storage=sweep_folder.optuna_url,
            make_sampler=spec.make_sampler,
            links=trial_links,
        )
        for ray_id, result in (("ray_0", DONE), ("ray_1", {"trial_status": "failed"})):
            number = s.suggest(ray_id)[NUMBER_KEY]
            runs[number], _ = tracker.start_child(folder.parent_run_id, str(number), f"trial-{number:03d}", {})
            s.on_trial_result(ray_id, {"trial_status": "running"})
            s.on_trial_complete(ray_id, result)
    return spec, runs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dashboard_command() -> str:
    """The console script `pip install` put next to this interpreter (else on PATH)."""
    found = shutil.which(
        "optuna-dashboard", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    if found is None:
        pytest.skip("optuna_dashboard imports but its optuna-dashboard command is not installed")
    return found


def get(url: str):
    """The JSON at `url`, or None while the server does not answer yet."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def test_dashboard_shows_objective_names_and_mlflow_runs(tmp_path):
    spec, runs = write_study(tmp_path)
    port = free_port()
    log = tmp_path / "dashboard.log"
    with log.open("w") as sink:
        server = subprocess.Popen(
            [dashboard_command(), f"sqlite:///{tmp_path / 'optuna.db'}", "--host=127.0.0.1", f"--port={port}"],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        studies = wait_until(
            lambda: get(f"{base}/api/studies"), 60, "optuna-dashboard's /api/studies", service=server, log=log
        )
        (study,) = [s for s in studies["study_summaries"] if s["study_name"] == spec.name]
        detail = get(f"{base}/api/studies/{study['study_id']}")
        assert detail is not None
        assert detail["objective_names"] == spec.keys == ["clean_accuracy", "worst_modality_auc_pgd"]
        attrs = {t["number"]: {a["key"]: a["value"] for a in t["user_attrs"]} for t in detail["trials"]}
        assert {n: a[MLFLOW_RUN_ATTR] for n, a in attrs.items()} == runs
        states = {t["number"]: t["state"] for t in detail["trials"]}
        complete = [n for n, state in states.items() if state == "Complete"]
        assert len(complete) == 1 and attrs[complete[0]][ROWS_ATTR] == rows_path(complete[0])
        assert all(ROWS_ATTR not in a for n, a in attrs.items() if n not in complete)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
