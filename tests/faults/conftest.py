"""The fault tests: the sweep tests' environment and Ray (tests/sweep_session.py), and the
shrunk smoke sweep run once without faults, the reference the faulted runs are held to."""

from __future__ import annotations

import pytest

from robustmm.tune.runner import run_sweep

from sweep_helpers import smoke_spec
from sweep_session import ray_session  # noqa: F401  (a fixture)


@pytest.fixture(scope="session")
def smoke_reference(ray_session, tmp_path_factory):  # noqa: F811
    """The folder of `sweep_command`'s sweep run to its end on the session's Ray, untouched."""
    out = tmp_path_factory.mktemp("reference") / "sweep"
    run_sweep(smoke_spec(), out)
    return out
