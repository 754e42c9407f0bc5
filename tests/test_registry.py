from __future__ import annotations

import pytest

from robustmm.errors import ConfigError, UnknownNameError
from robustmm.registry import Registry


def test_lookup_and_did_you_mean():
    r: Registry[int] = Registry("widget")
    r.add("alpha", 1)
    r.add("beta", 2)
    assert r.get("beta") == 2 and r.names() == ["alpha", "beta"] and "alpha" in r
    with pytest.raises(
        UnknownNameError, match=r"unknown widget 'alpah' \(did you mean 'alpha'\?\); known: alpha, beta"
    ):
        r.get("alpah")
    with pytest.raises(ConfigError, match="registered twice"):
        r.add("alpha", 3)
