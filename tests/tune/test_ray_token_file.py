"""The token file of a private local Ray's token authentication is readable by its owner only:
written 0600 in a 0700 ~/.ray when missing (Ray itself writes it 0644), tightened when found
looser, and left alone when no file is used."""

from __future__ import annotations

import os
import stat

import pytest

from robustmm.tune.ray_connect import guard_token_file


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_a_missing_token_file_is_written_0600_in_a_0700_folder(home):
    before = os.umask(0)  # the most permissive umask: the modes must not come from it
    try:
        path = guard_token_file()
    finally:
        os.umask(before)
    assert path == home / ".ray" / "auth_token"
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    token = path.read_text()
    assert len(token) == 64 and int(token, 16) >= 0


def test_a_token_file_readable_by_others_is_tightened_and_kept(home):
    path = home / ".ray" / "auth_token"
    path.parent.mkdir()
    path.write_text("f" * 64)
    path.chmod(0o644)
    assert guard_token_file() == path
    assert _mode(path) == 0o600 and path.read_text() == "f" * 64


def test_the_file_named_by_ray_auth_token_path_is_tightened(home, monkeypatch):
    path = home / "elsewhere" / "token"
    path.parent.mkdir()
    path.write_text("a" * 64)
    path.chmod(0o664)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(path))
    assert guard_token_file() == path
    assert _mode(path) == 0o600
    assert not (home / ".ray").exists()


@pytest.mark.parametrize("var, value", [("RAY_AUTH_MODE", "disabled"), ("RAY_AUTH_TOKEN", "b" * 64)])
def test_no_file_is_written_when_ray_uses_none(home, monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    assert guard_token_file() is None
    assert not (home / ".ray").exists()
