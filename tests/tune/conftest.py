"""The sweep tests' environment and session-wide Ray instance (tests/sweep_session.py)."""

from sweep_session import ray_session  # noqa: F401  (a fixture)
