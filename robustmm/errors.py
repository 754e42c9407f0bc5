"""The exception hierarchy. Everything a user can get wrong raises a RobustMMError subclass
whose message names the offending value and the fix; the CLI prints it as one line."""

from __future__ import annotations


class RobustMMError(Exception):
    """Root of all errors the user can act on."""


class ConfigError(RobustMMError):
    """A configuration value is invalid (bad type, out of range, unknown key)."""


class DataError(RobustMMError):
    """A data set is missing, malformed or inconsistent."""


class UnknownNameError(ConfigError):
    """A name looked up in a registry does not exist."""


class TrainingError(RobustMMError):
    """Training diverged (NaN/inf loss) or could not proceed."""


class SweepStopped(RobustMMError):
    """A sweep stopped on something outside it (a full disk, a lost cluster); its folder is kept
    and `--resume` continues it."""
