"""Ray's, MLflow's and Optuna's log lines go to the sweep folder's libraries.log, not the terminal.

A sweep says what happens in its own lines (`[sweep] ...`, one per trial event). The libraries'
chatter stays off the terminal: their informational lines (Ray's "Started a local Ray instance",
MLflow's "Creating initial MLflow database tables", Optuna's "A new study created") are dropped,
and their warnings and errors (Ray's token-auth notice, Ray Tune's `Tuner.restore(...)` advice
after Ctrl-C, which contradicts `--resume`, a failing trial's traceback, a failed SQL write on a
full disk) are kept in the file for whoever needs them. With `-v` nothing is moved.

The file cannot exist before the sweep's checks pass (a refused sweep writes nothing), so records
are held in memory until `LibraryLogs.write_to` names it; a sweep refused before that drops them.
Each library configures its loggers when it is imported, replacing their handlers, so they are
imported here first and the handlers replaced afterwards; everything is put back on exit.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from robustmm.tracking import mlflow_loggers

FILE = "libraries.log"
HELD = 10_000  # records kept in memory before the file exists (the oldest are dropped beyond)
# Ray Tune's first line after Ctrl-C, said in the sweep's words instead
STOPPING = "Stop signal received"
STOPPING_LINE = "interrupted: stopping the trials and saving their state (Ctrl-C again stops at once)"


class LibraryLogs(logging.Handler):
    """Holds WARNING+ records until `write_to(path)`, then appends them there; never complains
    on stderr (a full disk must not print a traceback per record)."""

    def __init__(self, say: Callable[[str], None] | None = None) -> None:
        super().__init__(logging.WARNING)
        self.say = say
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.held: list[logging.LogRecord] = []
        self.file: logging.FileHandler | None = None

    def write_to(self, path: Path) -> None:
        self.file = logging.FileHandler(path, delay=True)
        self.file.setFormatter(self.formatter)
        held, self.held = self.held, []
        for record in held:
            self.emit(record)

    def emit(self, record: logging.LogRecord) -> None:
        if self.say is not None and record.name.startswith("ray.tune") and STOPPING in str(record.msg):
            self.say(STOPPING_LINE)
        if self.file is None:
            self.held = self.held[-(HELD - 1) :] + [record]
            return
        try:
            self.file.emit(record)
        except Exception:
            pass

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        pass

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        super().close()


def library_loggers() -> tuple[str, ...]:
    """The libraries' top loggers, each configured by its library (imported here for that)."""
    import optuna
    import ray
    import ray.tune  # noqa: F401 (configures "ray.tune")

    del optuna, ray
    return ("ray", "ray.tune", "optuna", *mlflow_loggers())


@contextlib.contextmanager
def libraries_to_file(verbose: bool, say: Callable[[str], None] | None = None) -> Iterator[LibraryLogs | None]:
    """Inside, the libraries' log records go to the returned handler (None with `verbose`: they
    stay on the terminal); `say` hears that Ctrl-C is stopping the sweep."""
    if verbose:
        yield None
        return
    handler = LibraryLogs(say)
    saved = []
    for name in library_loggers():
        logger = logging.getLogger(name)
        saved.append((logger, list(logger.handlers), logger.level, logger.propagate))
        logger.handlers = [handler]
        logger.setLevel(min(logger.level or logging.WARNING, logging.WARNING))
        logger.propagate = False
    try:
        yield handler
    finally:
        for logger, handlers, level, propagate in saved:
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)
        handler.close()
