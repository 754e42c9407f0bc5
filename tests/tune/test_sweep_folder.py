"""sweep.json: the folder's own parts by relative name, foreign ones by URI with no credentials."""

from __future__ import annotations

import json

import pytest

from robustmm.errors import ConfigError
from robustmm.tune.runner import _folder
from robustmm.tune.space import parse_sweep
from robustmm.tune.sweep_folder import STATE_FILE, SweepFolder

from sweep_helpers import tiny_sweep


def test_own_parts_follow_the_folder(tmp_path):
    a = SweepFolder(tmp_path / "a", experiment="tiny", parent_run_id="p1")
    a.use_tracking(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}")
    a.out.mkdir()
    a.save()
    text = (a.out / STATE_FILE).read_text()
    assert str(tmp_path) not in text
    b = SweepFolder.load(tmp_path / "b", json.loads(text))
    assert b.tracking_uri == f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}"
    assert b.optuna_url == f"sqlite:///{tmp_path / 'b' / 'optuna.db'}"
    assert b.experiment_path == str(tmp_path / "b" / "ray" / "tiny")
    assert b.artifact_root == (tmp_path / "b" / "mlartifacts").as_uri()
    assert b.parent_run_id == "p1"


def test_an_older_absolute_sweep_json_is_read_as_the_folders_own(tmp_path):
    old = {
        "tracking_uri": "sqlite:////somewhere/else/mlflow.db",
        "parent_run_id": "p",
        "storage": "/somewhere/else/ray",
        "experiment": "tiny",
        "optuna_storage": "sqlite:////somewhere/else/optuna.db",
        "started": "2026-01-01T00:00:00",
    }
    folder = SweepFolder.load(tmp_path, old)
    assert folder.own_tracking and folder.storage is None
    assert folder.experiment_path == str(tmp_path / "ray" / "tiny")


def test_a_tracking_servers_credentials_are_never_stored(tmp_path):
    folder = SweepFolder(tmp_path, experiment="tiny", parent_run_id="p")
    folder.use_tracking("http://alice:hunter2@mlflow.example:5000")
    assert folder.tracking_uri == "http://alice:hunter2@mlflow.example:5000"  # in memory, to connect
    folder.save()
    text = (tmp_path / STATE_FILE).read_text()
    assert "hunter2" not in text and "alice" not in text and "http://***@mlflow.example:5000" in text
    again = SweepFolder.load(tmp_path, json.loads(text))
    assert again.needs_credentials()
    spec = parse_sweep(tiny_sweep())
    with pytest.raises(ConfigError, match=r"credentials are not stored; pass --tracking-uri") as e:
        _folder(spec, tmp_path, json.loads(text), None, None)
    assert "hunter2" not in str(e.value)
    given = _folder(spec, tmp_path, json.loads(text), "http://alice:hunter2@mlflow.example:5000", None)
    assert given.tracking_uri == "http://alice:hunter2@mlflow.example:5000"


def test_a_corrupt_sweep_json_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="is not a sweep state"):
        SweepFolder.load(tmp_path, {"tracking_uri": None})
