"""The Ray a sweep runs on: a private local instance unless an address is given."""

from __future__ import annotations

import os

from robustmm.errors import ConfigError


def connect_ray(address: str | None = None, num_cpus: int | None = None) -> str:
    """The Ray a sweep runs on: the cluster at `address` when one is given (`--address`, else
    RAY_ADDRESS, which `ray job submit` sets; `auto` finds one started on this machine), else a
    private local instance of its own, never another user's Ray found on the machine. Returns a
    line saying which."""
    import ray

    if ray.is_initialized():
        return "using the Ray instance already running in this process"
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        return f"started a private local Ray instance ({ray.cluster_resources().get('CPU', 0):g} CPUs)"
    try:
        ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ConfigError(
            f"cannot join the Ray cluster at {address!r} ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
            "start it first, or drop --address (and RAY_ADDRESS) to run on a private local instance"
        ) from e
    return f"joined the Ray cluster at {ray.get_runtime_context().gcs_address}"


def check_resources(cpu: float, gpu: float) -> None:
    """Refuse a per-trial request the cluster cannot meet."""
    import ray

    have = ray.cluster_resources()
    if gpu > 0 and have.get("GPU", 0) < gpu:
        raise ConfigError(
            f"resources.gpu={gpu:g} per trial, but the Ray cluster has {have.get('GPU', 0):g} GPUs; "
            "set resources.gpu: 0 to run on CPUs"
        )
    if have.get("CPU", 0) < cpu:
        raise ConfigError(f"resources.cpu={cpu:g} per trial, but the Ray cluster has {have.get('CPU', 0):g} CPUs")
