"""Where a sweep's parts live, recorded in its folder relative to the folder itself.

`sweep.json` names the parts a sweep keeps outside its own folder (a tracking server, a shared
Ray storage path) and nothing of the folder's own: the local MLflow store (`mlflow.db`,
`mlartifacts/`), the Optuna study (`optuna.db`), Ray's experiment (`ray/`) and the trial records
(`records/`) are found relative to wherever the folder is now, so a moved or copied folder
resumes into itself.

The driver's Optuna searcher and Tune callbacks are pickled into Ray's experiment; they hold no
path or URI of their own but ask the folder the driver has activated (`optuna_url`,
`tracking_uri`, `records_dir`; module-level functions, pickled by name), so a restored copy
writes into the copy, and no credential of a tracking URI is ever written into a file: the
stored URI is redacted and the real one stays in the driver's memory.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustmm.errors import ConfigError
from robustmm.redact import has_secret, redact
from robustmm.results import write_text

STATE_FILE = "sweep.json"
SPEC_FILE = "sweep.yaml"
OWN_TRACKING = "mlflow.db"
OWN_OPTUNA = "optuna.db"
OWN_RAY = "ray"
ARTIFACTS = "mlartifacts"
RECORDS = "records"


@dataclass
class SweepFolder:
    out: Path
    experiment: str
    parent_run_id: str = ""
    tracking: str | None = None  # a tracking server (redacted); None: the folder's own mlflow.db
    storage: str | None = None  # Ray storage shared by the nodes (--storage); None: the folder's ray/
    ray_experiment: str = ""  # Ray Tune's experiment name under the storage (a new one if Ray's state was lost)
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))
    secret_uri: str | None = field(default=None, repr=False)  # the tracking URI with its credentials, never stored

    def __post_init__(self) -> None:
        self.out = Path(self.out).resolve()
        self.ray_experiment = self.ray_experiment or self.experiment

    @property
    def tracking_uri(self) -> str:
        return self.secret_uri or self.tracking or f"sqlite:///{self.out / OWN_TRACKING}"

    @property
    def own_tracking(self) -> bool:
        return self.tracking is None

    @property
    def optuna_url(self) -> str:
        return f"sqlite:///{self.out / OWN_OPTUNA}"

    @property
    def ray_storage(self) -> str:
        return self.storage or str(self.out / OWN_RAY)

    @property
    def experiment_path(self) -> str:
        return f"{self.ray_storage.rstrip('/')}/{self.ray_experiment}"

    @property
    def artifact_root(self) -> str:
        return (self.out / ARTIFACTS).as_uri()

    @property
    def records(self) -> Path:
        return self.out / RECORDS

    def use_tracking(self, uri: str) -> None:
        """Track into `uri` (the folder's own store when it is that store's URI)."""
        if uri == f"sqlite:///{self.out / OWN_TRACKING}":
            self.tracking, self.secret_uri = None, None
        else:
            self.tracking, self.secret_uri = redact(uri), uri if has_secret(uri) else None

    def to_json(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "parent_run_id": self.parent_run_id,
            "tracking_uri": self.tracking,
            "storage": self.storage,
            "ray_experiment": self.ray_experiment,
            "started": self.started,
        }

    def save(self) -> None:
        write_text(self.out / STATE_FILE, json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, out: Path, data: dict[str, Any]) -> SweepFolder:
        """The folder's state from its sweep.json, read as it is now. Older sweep.json files
        named the folder's own parts by absolute path; those are read as the folder's own."""
        out = Path(out).resolve()
        try:
            tracking, storage = data.get("tracking_uri"), data.get("storage")
            if "ray_experiment" not in data:  # the older layout
                tracking = None if _names_own(tracking, OWN_TRACKING) else tracking
                storage = None if storage and Path(storage).name == OWN_RAY and "://" not in storage else storage
            folder = cls(
                out,
                experiment=str(data["experiment"]),
                parent_run_id=str(data["parent_run_id"]),
                tracking=tracking,
                storage=storage,
                ray_experiment=str(data.get("ray_experiment") or data["experiment"]),
                started=str(data.get("started", "")),
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise ConfigError(
                f"--resume: {out / STATE_FILE} is not a sweep state ({type(e).__name__}: {e}); "
                "the folder cannot be resumed, start the sweep again with another --out"
            ) from e
        return folder

    def needs_credentials(self) -> bool:
        """The stored tracking URI had credentials (redacted) that this driver was not given."""
        return self.tracking is not None and "://***@" in self.tracking and self.secret_uri is None


def _names_own(uri: Any, name: str) -> bool:
    """An older sweep.json's absolute URI of the folder's own SQLite store (a copied folder's
    names the original's)."""
    return uri is None or (isinstance(uri, str) and uri.startswith("sqlite:///") and Path(uri[10:]).name == name)


_active: SweepFolder | None = None


@contextlib.contextmanager
def activated(folder: SweepFolder) -> Iterator[SweepFolder]:
    """Make `folder` the one the driver's searcher and callbacks write into."""
    global _active
    before, _active = _active, folder
    try:
        yield folder
    finally:
        _active = before


def active() -> SweepFolder:
    if _active is None:
        raise RuntimeError("no sweep folder is active: the sweep's searcher and callbacks run inside run_sweep")
    return _active


def optuna_url() -> str:
    """The active sweep's Optuna storage (the searcher's storage, pickled by name)."""
    return active().optuna_url


def tracking_uri() -> str:
    """The active sweep's MLflow tracking URI, credentials included (kept in memory only)."""
    return active().tracking_uri


def records_dir() -> Path:
    """The active sweep's trial records."""
    return active().records
