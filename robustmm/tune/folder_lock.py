"""One owner per sweep folder: an exclusive OS file lock held for the driver's life.

The lock is taken before anything else is written into the folder and released when the driver
ends — by returning, by an exception, or by being killed (the OS drops a dead process's locks),
so a killed sweep never leaves the folder locked. A second sweep (or `--resume`) on a folder
another driver holds fails at once with one line naming the holder's PID.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from robustmm.errors import ConfigError

LOCK_FILE = ".sweep.lock"


def holder(out: Path) -> str:
    """The PID the lock file names (what its holder wrote), or 'unknown'."""
    try:
        return (out / LOCK_FILE).read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def folder_lock(out: str | Path) -> Iterator[Path]:
    """Hold the sweep folder `out` (created if missing) for the body of the `with`.

    When the body wrote nothing into the folder (a sweep refused by its checks), the lock file
    this call made — and the folder, if this call made it — are removed again, so the refusal
    leaves no trace."""
    out = Path(out)
    created = not out.exists()
    before = {p.name for p in out.iterdir()} if not created else set()
    made_lock = LOCK_FILE not in before
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise ConfigError(f"cannot write the sweep folder {str(out)!r} ({e.strerror}); choose another --out") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"{out} is in use by another sweep (PID {holder(out)}); wait for it to end or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield out
        finally:
            if made_lock and {p.name for p in out.iterdir()} == before | {LOCK_FILE}:
                (out / LOCK_FILE).unlink(missing_ok=True)
                if created:
                    out.rmdir()
    finally:
        os.close(fd)  # closing the descriptor releases the lock
