"""Which torch device a run uses: `device: auto | cpu | cuda | cuda:N` of the run config."""

from __future__ import annotations

import torch

from robustmm.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto`: the first GPU when there is one, else the CPU; a CUDA device asked for on a machine
    without one is a ConfigError with the fix."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r} asked for but no CUDA device is available; use --device cpu or --device auto "
            "(in a config file device: auto; in a sweep --set device=auto)"
        )
    return torch.device(name)
