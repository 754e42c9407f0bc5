"""What every test that runs sweeps shares (tests/tune, tests/faults): their environment, and one
Ray instance for the whole test run (2 CPUs, no dashboard, a small object store).

Each of those folders' conftest.py imports the fixture from here, so the environment is set
before any of their test modules imports ray, and both folders use the same Ray and data cache."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a loopback test cluster; set before ray is imported
# generated data go to a cache of this test run; set before Ray starts so its workers see it too
os.environ.setdefault("ROBUSTMM_CACHE", tempfile.mkdtemp(prefix="robustmm-test-cache-"))


@pytest.fixture(scope="session")
def ray_session():
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=100 * 1024**2,
            log_to_driver=False,
            configure_logging=False,
        )
    yield ray
