"""A trial's record: how it ended, from the driver's view of it (the Tune Trial), so one that
died before its first report (its worker or node gone) is still a failed row with its values,
never a crash."""

from __future__ import annotations

import math
from types import SimpleNamespace

from robustmm.tune.records import read_records, trial_record, write_record
from robustmm.tune.space import parse_sweep

from sweep_helpers import TINY_SWEEP


def _trial(**kw):
    base = dict(
        trial_id="abc",
        config={"model.tau": 0.2, "trial_number": 3},
        last_result={},
        status="ERROR",
        error=RuntimeError("The actor died unexpectedly before finishing this task."),
        error_file=None,
        checkpoint=None,
    )
    return SimpleNamespace(**{**base, **kw})


def test_a_trial_that_never_reported_is_a_failed_record_with_its_values(tmp_path):
    spec = parse_sweep(TINY_SWEEP)
    record = trial_record(_trial(), spec.objectives, errored=True)
    assert record["trial"] == 3 and record["status"] == "failed"
    assert "actor died" in record["failure_reason"]
    assert record["params"] == {"model.tau": 0.2}
    assert all(math.isnan(record[o.key]) for o in spec.objectives)
    write_record(tmp_path, record, None)
    ((back, rows),) = read_records(tmp_path).values()
    assert back["trial"] == 3 and rows is None


def test_an_unreadable_record_is_skipped_not_a_crash(tmp_path):
    (tmp_path / "trial-0001.json").write_text("{trunc")
    assert read_records(tmp_path) == {}
