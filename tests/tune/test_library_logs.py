"""The libraries' log records leave the terminal for the sweep folder's libraries.log."""

from __future__ import annotations

import logging

from robustmm.tune.library_logs import FILE, STOPPING_LINE, LibraryLogs, libraries_to_file


def test_records_are_held_until_the_file_is_named_then_written(tmp_path, capfd):
    said: list[str] = []
    with libraries_to_file(verbose=False, say=said.append) as logs:
        logging.getLogger("optuna.storages").warning("held %s", "first")
        logging.getLogger("mlflow.store").info("Creating initial MLflow database tables...")
        assert not (tmp_path / FILE).exists()
        logs.write_to(tmp_path / FILE)
        logging.getLogger("ray.tune.tune").warning("Stop signal received (e.g. via SIGINT/Ctrl+C)")
        logging.getLogger("alembic.runtime").error("after")
    text = (tmp_path / FILE).read_text()
    assert "held first" in text and "after" in text and "Stop signal received" in text
    assert "Creating initial" not in text  # informational lines are dropped
    assert said == [STOPPING_LINE]  # Ctrl-C is announced in the sweep's words, once
    err = capfd.readouterr().err
    assert "held first" not in err and "Stop signal" not in err and "after" not in err


def test_handlers_are_put_back_on_exit(tmp_path):
    before = {name: list(logging.getLogger(name).handlers) for name in ("ray", "ray.tune", "optuna", "mlflow")}
    with libraries_to_file(verbose=False) as logs:
        assert all(logging.getLogger(n).handlers == [logs] for n in before)
    assert {n: list(logging.getLogger(n).handlers) for n in before} == before


def test_verbose_moves_nothing(tmp_path):
    before = list(logging.getLogger("optuna").handlers)
    with libraries_to_file(verbose=True) as logs:
        assert logs is None and logging.getLogger("optuna").handlers == before


def test_a_file_that_cannot_be_written_is_silent(tmp_path, capfd):
    logs = LibraryLogs()
    logs.write_to(tmp_path / "missing" / FILE)  # its folder does not exist: every write fails
    logs.emit(logging.LogRecord("ray", logging.ERROR, __file__, 1, "lost", None, None))
    assert capfd.readouterr().err == ""
    logs.close()
