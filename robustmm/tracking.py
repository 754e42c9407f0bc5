"""MLflow: one parent run per sweep, one nested child run per trial (the only module importing mlflow).

Everything goes through `MlflowClient` with explicit run ids, so nothing depends on a global
"active run" and the driver can log many trials at once. Child runs are nested under the parent
with the `mlflow.parentRunId` tag and found again by their `robustmm.trial` tag (the trial number), so a resumed
sweep adds to the runs it made before instead of making new ones.

Locally the store is `sqlite:///<out>/mlflow.db` with artifacts in `<out>/mlartifacts`; on a
cluster point `--tracking-uri` (or MLFLOW_TRACKING_URI) at an MLflow server. A server given on
the command line is checked before anything starts (`open_tracking_uri`): it must accept a
connection, and its `user:password@` moves to MLflow's environment variables, so no file, tag
or message keeps it; every tag and parameter value logged here is redacted as well.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import posixpath
import socket
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from robustmm.errors import ConfigError
from robustmm.redact import redact

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
TRIAL_TAG = "robustmm.trial"  # the trial's key: its Optuna number
KIND_TAG = "robustmm.kind"
NOTE_TAG = "mlflow.note.content"  # the description MLflow's UI shows on an experiment or a run
LOGGED_ARTIFACTS_TAG = "mlflow.loggedArtifacts"  # which artifacts the UI shows as tables
MAX_PARAM = 6000
MAX_NOTE = 50_000
UI_ADDRESS = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
# the searches the README documents: the front's trial runs, and every trial run of a sweep
FRONT_SEARCH = f"tags.pareto_rank = '1' and tags.`{KIND_TAG}` = 'trial'"
TRIALS_SEARCH = f"tags.`{KIND_TAG}` = 'trial'"


def default_uri(out: str | Path) -> str:
    return f"sqlite:///{Path(out).resolve() / 'mlflow.db'}"


def resolve_uri(flag: str | None, out: str | Path) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else the SQLite file beside the sweep."""
    uri = flag or os.environ.get("MLFLOW_TRACKING_URI") or default_uri(out)
    if "://" not in uri:
        raise ConfigError(
            f"tracking URI {redact(uri)!r} is not a URI; use e.g. http://127.0.0.1:5000 or sqlite:///path/to/mlflow.db"
        )
    if uri.startswith("file:"):
        raise ConfigError(
            f"tracking URI {redact(uri)!r}: MLflow's file store is refused; use sqlite:///... or a server URL"
        )
    return uri


def split_credentials(uri: str) -> tuple[str, tuple[str, str] | None]:
    """`uri` without its `user:password@`, and the (user, password) it held (percent-decoded)."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, sep, password = userinfo.partition(":")
    if not sep:
        raise ConfigError(
            f"tracking URI {redact(uri)!r} holds a token before '@', which would be stored with the sweep; "
            "drop it from the URI and set MLFLOW_TRACKING_TOKEN instead"
        )
    return urlunsplit(parts._replace(netloc=host)), (unquote(user), unquote(password))


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Refuse a tracking server that does not accept a connection, in seconds: MLflow's own client
    retries a refused connection for minutes before it gives up. Behind a proxy, MLflow decides."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    shown = redact(uri)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ConfigError(f"tracking URI {shown!r} has a bad port; write e.g. http://127.0.0.1:5000") from None
    host = parts.hostname
    if not host:
        raise ConfigError(f"tracking URI {shown!r} names no host; write e.g. http://127.0.0.1:5000")
    if parts.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(host):
        return
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        reason = e.strerror or str(e) or type(e).__name__
        raise ConfigError(
            f"cannot reach the MLflow tracking server {shown!r} ({reason}); start it "
            "(mlflow server --host 127.0.0.1 --port 5000) or fix --tracking-uri / MLFLOW_TRACKING_URI"
        ) from None


def open_tracking_uri(uri: str, out: str | Path) -> str:
    """A tracking URI given on the command line, checked (`resolve_uri`) and answered by its
    server (`check_reachable`) before anything starts. Returned without its `user:password@`,
    which move to MLFLOW_TRACKING_USERNAME / _PASSWORD, where MLflow reads them: the sweep's
    files, tags and messages then hold the URI without them."""
    uri, credentials = split_credentials(resolve_uri(uri, out))
    check_reachable(uri)
    if credentials is not None:
        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = credentials
    return uri


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on this store."""
    if uri.startswith("sqlite:"):
        return f"mlflow ui --backend-store-uri {uri}"
    return f"open {redact(uri)} in a browser"


def ui_address(uri: str) -> str:
    """The address of the MLflow UI that shows this store: the server itself, or `mlflow ui`'s
    default address for a local database."""
    if uri.startswith(("http://", "https://")):
        return redact(uri).rstrip("/")
    return UI_ADDRESS


def run_table_url(uri: str, experiment_id: str, search: str = "") -> str:
    """The UI page with the experiment's run table, filtered by `search` when given. MLflow 3
    opens an experiment on its GenAI overview (traces, which a sweep has none of);
    `workflowType=machine_learning` is the run table of "Model training"."""
    url = f"{ui_address(uri)}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    return f"{url}&searchFilter={quote(search)}" if search else url


def source_tags(name: str, commit: str) -> dict[str, str]:
    """MLflow's own source tags (the UI's "Source" column): the script or command that ran, and
    the git commit when there is one."""
    tags = {"mlflow.source.name": name, "mlflow.source.type": "LOCAL"}
    if commit and commit != "unknown":
        tags["mlflow.source.git.commit"] = commit
    return tags


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _finite_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
    }


class Tracker:
    """The sweep's MLflow experiment, its parent run and its trials' child runs."""

    def __init__(self, uri: str, experiment: str, artifact_location: str | None = None) -> None:
        from mlflow import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        try:
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = (
                found.experiment_id
                if found is not None
                else self.client.create_experiment(experiment, artifact_location=artifact_location)
            )
        except Exception as e:  # connection refused, bad scheme, database locked ...
            reason = " ".join(str(e).split())[:300]
            raise ConfigError(f"cannot open the MLflow tracking store {redact(uri)!r}: {redact(reason)}") from None

    def describe(self, text: str) -> None:
        """The experiment's description (MLflow's note), shown above its run table."""
        self.client.set_experiment_tag(self.experiment_id, NOTE_TAG, redact(text)[:MAX_NOTE])

    # runs -------------------------------------------------------------------------------------------

    def start_parent(self, name: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        tags = {k: redact(str(v)) for k, v in tags.items()}  # e.g. the command line with a --tracking-uri
        run = self.client.create_run(self.experiment_id, run_name=name, tags={KIND_TAG: "sweep", **tags})
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def reopen(self, run_id: str) -> str:
        """Mark a parent run of an interrupted sweep as running again."""
        try:
            self.client.get_run(run_id)
        except Exception:
            raise ConfigError(
                f"the sweep's MLflow run {run_id} is not in {redact(self.uri)}; "
                "resume with the tracking URI the sweep was started with"
            ) from None
        self.client.update_run(run_id, status="RUNNING")
        return run_id

    def find_child(self, parent_id: str, key: str) -> str | None:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}' and tags.`{TRIAL_TAG}` = '{key}'",
            max_results=2,
        )
        return runs[0].info.run_id if runs else None

    def children(self, parent_id: str) -> dict[str, str]:
        """trial key -> child run id, for every child of the parent."""
        out: dict[str, str] = {}
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}'", page_token=token
            )
            out.update({r.data.tags.get(TRIAL_TAG, r.info.run_id): r.info.run_id for r in page})
            token = page.token
            if not token:
                return out

    def start_child(self, parent_id: str, key: str, name: str, tags: Mapping[str, str]) -> tuple[str, bool]:
        """The child run of a trial: (run id, whether it existed already)."""
        existing = self.find_child(parent_id, key)
        if existing is not None:
            self.client.update_run(existing, status="RUNNING")
            return existing, True
        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={PARENT_TAG: parent_id, TRIAL_TAG: key, KIND_TAG: "trial", **tags},
        )
        return run.info.run_id, False

    def last_step(self, run_id: str, metric: str) -> int:
        history = self.client.get_metric_history(run_id, metric)
        return max((m.step for m in history), default=-1)

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    # logging ----------------------------------------------------------------------------------------

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        flat = flatten(params)
        known = self.client.get_run(run_id).data.params
        new = [Param(k, redact(str(v))[:MAX_PARAM]) for k, v in flat.items() if k not in known]
        for i in range(0, len(new), 100):
            self.client.log_batch(run_id, params=new[i : i + 100])

    def log_metrics(self, run_id: str, metrics: Mapping[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, step) for k, v in _finite_metrics(metrics).items()]
        for i in range(0, len(batch), 500):
            self.client.log_batch(run_id, metrics=batch[i : i + 500])

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        cut = {k: MAX_NOTE if k == NOTE_TAG else MAX_PARAM for k in tags}
        self.client.log_batch(run_id, tags=[RunTag(k, redact(str(v))[: cut[k]]) for k, v in tags.items()])

    def log_table(self, run_id: str, frame: Any, artifact_file: str) -> None:
        """A table the UI shows (MLflow's table artifact: JSON in pandas' "split" layout, listed
        in the run's `mlflow.loggedArtifacts` tag): a trial's grid cells, the front. Written
        here, not with `MlflowClient.log_table`, which appends to a table logged before: a
        resumed sweep would double it (and print a download progress bar)."""
        import json
        import tempfile

        folder, name = posixpath.split(artifact_file)
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / name
            _json_ready(frame).to_json(path, orient="split", index=False, date_format="iso")
            self.client.log_artifact(run_id, str(path), folder or None)
        listed = json.loads(self.client.get_run(run_id).data.tags.get(LOGGED_ARTIFACTS_TAG, "[]"))
        entry = {"path": artifact_file, "type": "table"}
        if entry not in listed:
            self.client.set_tag(run_id, LOGGED_ARTIFACTS_TAG, json.dumps([*listed, entry]))

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    # a stopped sweep, a moved folder -------------------------------------------------------------

    def end_open_children(self, parent_id: str, status: str = "KILLED", tags: Mapping[str, Any] | None = None) -> int:
        """End every child of the parent still RUNNING (a stopped sweep's open trials)."""
        ended = 0
        for run_id in self.children(parent_id).values():
            if self.client.get_run(run_id).info.status == "RUNNING":
                if tags:
                    self.set_tags(run_id, tags)
                self.end(run_id, status)
                ended += 1
        return ended


def _json_ready(frame: Any) -> Any:
    """The frame with every cell a JSON value (MLflow writes tables as JSON): lists and other
    objects as text, missing values as None."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object:
            plain = (str, int, float, bool)
            frame[column] = [v if v is None or isinstance(v, plain) else str(v) for v in frame[column]]
    return frame.astype(object).where(frame.notna(), None)


def move_artifact_root(db_file: str | Path, experiment: str, root: str) -> bool:
    """Point the experiment's artifact location, and its runs' artifact URIs, at `root` in the
    local SQLite store `db_file` when they point elsewhere (the folder was moved or copied):
    returns whether anything changed. MLflow fixes an experiment's artifact location at creation
    and has no call to change it, so the store's two columns are rewritten here, by prefix."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(str(db_file))) as db, db:
        found = db.execute("SELECT experiment_id, artifact_location FROM experiments WHERE name = ?", (experiment,))
        row = found.fetchone()
        if row is None or row[1] == root:
            return False
        experiment_id, old = row
        db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?", (root, experiment_id))
        db.execute(
            "UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) "
            "WHERE experiment_id = ? AND substr(artifact_uri, 1, ?) = ?",
            (root, len(old) + 1, experiment_id, len(old), old),
        )
        moved = [r[0] for r in db.execute("SELECT run_uuid FROM runs WHERE experiment_id = ?", (experiment_id,))]
    _forget_artifact_repos(moved)
    return True


def _forget_artifact_repos(run_ids: list[str]) -> None:
    """MLflow keeps each run's artifact repository in a process-wide cache keyed by run id: a
    process that logged to the runs before they moved would go on writing to the old place."""
    from mlflow.tracking._tracking_service import utils

    cache = getattr(utils, "_artifact_repos_cache", None)
    for run_id in run_ids if cache is not None else []:
        cache.pop(run_id, None)


def mlflow_loggers() -> tuple[str, ...]:
    """The loggers MLflow configures when it is imported (it replaces their handlers then, so a
    caller that redirects them imports MLflow first: here)."""
    import mlflow  # noqa: F401

    return ("mlflow", "alembic")
