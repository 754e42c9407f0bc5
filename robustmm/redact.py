"""Secrets never leave in a message, a file or a tag: `user:password@` in a URI becomes `***@`.

MLflow reads a tracking server's credentials from MLFLOW_TRACKING_USERNAME / _PASSWORD (or
MLFLOW_TRACKING_TOKEN); a URI with them inline works, but what robustmm prints or stores of it
is redacted here.
"""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/@\s'\"]+)@")


def redact(text: str) -> str:
    """`text` with the user-info part of every URI in it (`user:password@`, `token@`) replaced."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}***@", text)


def has_secret(text: str) -> bool:
    """Whether `text` holds a URI with user info that `redact` would hide."""
    return any(m["userinfo"] != "***" for m in _USERINFO.finditer(text))
