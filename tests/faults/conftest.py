"""The fault tests: the sweep tests' environment and Ray (tests/sweep_session.py)."""

from sweep_session import ray_session  # noqa: F401  (a fixture)
