"""The sweep tests' environment, session-wide Ray instance (tests/sweep_session.py) and one
small sweep shared by the tests that read what a whole sweep leaves."""

import pytest

from robustmm.tune.runner import run_sweep
from robustmm.tune.space import parse_sweep

from sweep_helpers import tiny_sweep
from sweep_session import ray_session  # noqa: F401  (a fixture)

LRS = [0.003, 0.001, 1e-7, 1e30]
DESCRIPTION = "GMC's learning rate and temperature against clean accuracy and worst-modality PGD AUC"


@pytest.fixture(scope="session")
def swept(ray_session, tmp_path_factory):  # noqa: F811 (the fixture imported above)
    """One sweep with the three ways a trial can end: complete, failed (its loss diverges:
    lr=1e30) and pruned (ASHA stops it: lr=1e-7 barely learns). Trials run one at a time so the
    seeded grid order and ASHA's decisions are the same on every run."""
    raw = tiny_sweep(
        description=DESCRIPTION,
        space={
            "train.lr": {"type": "categorical", "choices": LRS},
            "model.tau": {"type": "categorical", "choices": [0.1, 0.3]},
        },
        sampler={"name": "grid", "seed": 0},
        budget={"num_samples": 8, "max_concurrent": 1},
        early_stopping={"metric": "representation/loss", "mode": "min", "grace_period": 1, "reduction_factor": 2},
    )
    out = tmp_path_factory.mktemp("sweep")
    result = run_sweep(parse_sweep(raw), out)
    return raw, out, result
