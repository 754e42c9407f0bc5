"""What MLflow's UI shows of a sweep: the run table's URL, the descriptions of the experiment,
the parent and each trial, every trial's settings as params, MLflow's own source tags, the
epoch and the seed not as metrics, tables the UI can show, and the README's searches."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from robustmm.tracking import (
    FRONT_SEARCH,
    LOGGED_ARTIFACTS_TAG,
    NOTE_TAG,
    TRIALS_SEARCH,
    Tracker,
    run_table_url,
    source_tags,
)
from robustmm.tune.mlflow_views import FRONT_TABLE, ROWS_TABLE, experiment_note, trial_settings
from robustmm.tune.space import parse_sweep

ROOT = Path(__file__).resolve().parents[2]


def test_the_run_table_url_skips_mlflows_genai_overview():
    local = run_table_url("sqlite:///tmp/x/mlflow.db", "7")
    assert local == "http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"
    server = run_table_url("http://user:secret@mlflow.example:5000/", "7")
    assert server.startswith("http://") and "secret" not in server
    assert server.endswith("mlflow.example:5000/#/experiments/7/runs?workflowType=machine_learning")
    searched = run_table_url("sqlite:///x.db", "7", "tags.pareto_rank = '1'")
    assert searched == f"{local}&searchFilter=tags.pareto_rank%20%3D%20%271%27"


def test_source_tags_are_mlflows_own():
    assert source_tags("sweeps/x.py", "abc123") == {
        "mlflow.source.name": "sweeps/x.py",
        "mlflow.source.type": "LOCAL",
        "mlflow.source.git.commit": "abc123",
    }
    assert "mlflow.source.git.commit" not in source_tags("robustmm", "unknown")


def test_a_table_logged_again_is_replaced_not_appended(tmp_path):
    """A resumed sweep logs the front's table again: it must stay one copy of the front."""
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "tables", artifact_location=(tmp_path / "a").as_uri())
    run = tracker.start_parent("sweep", {}, {})
    frame = pd.DataFrame({"trial": [0, 3], "clean_accuracy": [0.8, float("nan")], "seeds": [[0], [1]]})
    for _ in range(2):
        tracker.log_table(run, frame, FRONT_TABLE)
    client = MlflowClient(tracking_uri=tracker.uri)
    table = _table(client, run, FRONT_TABLE, tmp_path / "down")
    assert table["trial"].tolist() == [0, 3] and table["seeds"].tolist() == ["[0]", "[1]"]
    assert table["clean_accuracy"].isna().tolist() == [False, True]
    listed = json.loads(client.get_run(run).data.tags[LOGGED_ARTIFACTS_TAG])
    assert listed == [{"path": FRONT_TABLE, "type": "table"}]  # what makes the UI show it as a table


def _client(result):
    client = MlflowClient(tracking_uri=result.tracking_uri)
    return client, client.get_run(result.parent_run_id)


def _children(client, parent):
    runs = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return {int(r.data.tags["trial_number"]): r for r in runs}


@pytest.mark.slow
def test_the_experiment_and_the_parent_are_described(swept):
    raw, _, result = swept
    client, parent = _client(result)
    experiment = client.get_experiment(parent.info.experiment_id)
    note = experiment.tags[NOTE_TAG]
    assert note == experiment_note(parse_sweep(raw)) and note.startswith(raw["description"])
    assert FRONT_SEARCH in note
    parent_note = parent.data.tags[NOTE_TAG]
    assert parent_note.startswith(raw["description"]) and result.front_markdown.strip() in parent_note
    assert result.experiment_id == parent.info.experiment_id


@pytest.mark.slow
def test_the_runs_carry_mlflows_source_tags(swept):
    _, _, result = swept
    client, parent = _client(result)
    runs = [parent, *_children(client, parent).values()]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    for run in runs:
        assert run.data.tags["mlflow.source.type"] == "LOCAL" and run.data.tags["mlflow.source.name"]
        if commit:
            assert run.data.tags["mlflow.source.git.commit"] == commit


@pytest.mark.slow
def test_every_trial_has_its_settings_as_params_and_no_epoch_or_seed_metric(swept):
    raw, _, result = swept
    spec = parse_sweep(raw)
    client, parent = _client(result)
    children = _children(client, parent)
    for r in result.trials.to_dict("records"):
        child = children[int(r["trial"])]
        params = child.data.params
        sampled = {k.removeprefix("param."): v for k, v in r.items() if k.startswith("param.")}
        expected = {k: str(v) for k, v in trial_settings(spec, sampled).items()}
        assert params == expected
        assert params["model.name"] == "gmc" and params["dataset.name"] == "synth-mhd"
        assert params["split"] == "validation" and params["seeds"] == "[0]" and "train.epochs" in params
        assert not {"epoch", "seed"} & set(child.data.metrics)
        note = child.data.tags[NOTE_TAG]
        assert note.startswith(f"Trial {r['trial']} of the sweep `{spec.name}`") and f"Ended: {r['status']}" in note
        if r["status"] == "complete" and r["pareto_rank"] == 1:
            assert "on the Pareto front" in note


def _table(client, run_id: str, path: str, tmp_path) -> pd.DataFrame:
    local = client.download_artifacts(run_id, path, str(tmp_path))
    data = json.loads(Path(local).read_text())
    return pd.DataFrame(data["data"], columns=data["columns"])


@pytest.mark.slow
def test_each_trial_has_its_cells_and_the_parent_its_front_as_tables(swept, tmp_path):
    _, out, result = swept
    client, parent = _client(result)
    rows = pd.read_parquet(out / "rows.parquet")
    for number, child in _children(client, parent).items():
        complete = child.data.tags["trial_status"] == "complete"
        logged = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert (ROWS_TABLE in logged) == complete
        if complete:
            cells = _table(client, child.info.run_id, ROWS_TABLE, tmp_path / str(number))
            mine = rows[rows["trial"] == number]
            assert len(cells) == len(mine) and cells["accuracy"].tolist() == pytest.approx(mine["accuracy"].tolist())
            assert list(cells.columns[:5]) == ["seed", "perturbation", "target", "eps", "accuracy"]
            assert "correct_mask" not in cells  # the per-sample masks stay in rows.parquet
    front = _table(client, parent.info.run_id, FRONT_TABLE, tmp_path / "front")
    assert sorted(front["trial"]) == sorted(result.front["trial"])


@pytest.mark.slow
def test_the_readmes_searches_find_the_fronts_and_the_trials_runs(swept):
    _, _, result = swept
    client, parent = _client(result)
    experiment = [parent.info.experiment_id]
    on_front = client.search_runs(experiment, FRONT_SEARCH)
    assert sorted(int(r.data.tags["trial_number"]) for r in on_front) == sorted(result.front["trial"])
    assert len(client.search_runs(experiment, TRIALS_SEARCH)) == len(result.trials)
    readme = (ROOT / "README.md").read_text()
    assert FRONT_SEARCH in readme and TRIALS_SEARCH in readme
