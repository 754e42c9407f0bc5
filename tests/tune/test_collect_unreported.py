"""A trial that ended before its first report (its worker or node died) has no metrics and so
no result.config: the sweep's table still gets it, as failed, from the config Tune saved in the
trial's folder; one without even that is left out, never a crash (int(None))."""

from __future__ import annotations

import json

import pyarrow.fs
from ray.tune import Result

from robustmm.tune.runner import collect
from robustmm.tune.space import parse_sweep

from sweep_helpers import TINY_SWEEP


def _unreported(path, config=None) -> Result:
    path.mkdir()
    if config is not None:
        (path / "params.json").write_text(json.dumps(config))
    return Result(
        metrics={},
        checkpoint=None,
        error=RuntimeError("The actor died unexpectedly before finishing this task."),
        path=str(path),
        _storage_filesystem=pyarrow.fs.LocalFileSystem(),
    )


def test_a_trial_that_never_reported_is_a_failed_row_from_its_saved_config(tmp_path):
    spec = parse_sweep(TINY_SWEEP)
    grid = [
        _unreported(tmp_path / "saved", {"model.tau": 0.2, "trial_number": 3}),
        _unreported(tmp_path / "nothing"),
    ]
    trials, rows = collect(grid, spec)
    assert rows.empty
    assert trials["trial"].tolist() == [3]
    row = trials.iloc[0]
    assert row["status"] == "failed" and "actor died" in row["failure_reason"]
    assert row["param.model.tau"] == 0.2
