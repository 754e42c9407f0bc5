"""The bounded waits of the tests that start services (tests/sweep_helpers.py): a service that
never answers or ends first fails the test, naming what was awaited, instead of hanging it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sweep_helpers import first_line, wait_until

SILENT = "import sys; sys.stdin.read()"  # says nothing until its stdin closes


def test_wait_until_returns_what_the_probe_found():
    answers = iter([None, False, "ready"])
    assert wait_until(lambda: next(answers), 30, "the probe", every=0.01) == "ready"


def test_wait_until_gives_up_at_its_deadline_naming_what_it_waited_for():
    with pytest.raises(pytest.fail.Exception, match="the service to answer: not within 0 s"):
        wait_until(lambda: None, 0, "the service to answer", every=0.01)


def test_wait_until_fails_at_once_when_the_service_ended(tmp_path):
    log = tmp_path / "service.log"
    log.write_text("port already in use\n")
    service = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    service.wait(timeout=60)
    with pytest.raises(pytest.fail.Exception, match=r"(?s)the head: the service ended \(exit 3\) first.*in use"):
        wait_until(lambda: None, 600, "the head", service=service, log=log)


def test_first_line_of_a_helper_that_never_says_it_is_ready_fails():
    helper = subprocess.Popen([sys.executable, "-c", SILENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        with pytest.raises(pytest.fail.Exception, match="the helper to start: nothing within 1 s"):
            first_line(helper, 1, "the helper to start")
    finally:
        helper.communicate("", timeout=60)


def test_first_line_of_a_helper_that_ends_first_fails_with_its_exit_code():
    helper = subprocess.Popen([sys.executable, "-c", "raise SystemExit(4)"], stdout=subprocess.PIPE, text=True)
    with pytest.raises(pytest.fail.Exception, match=r"the helper to start: it ended \(exit 4\) first"):
        first_line(helper, 60, "the helper to start")
