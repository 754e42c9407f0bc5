"""The options mechanism: typed coercion, one-line errors, did-you-mean, check() once, defaults=."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from robustmm.errors import ConfigError
from robustmm.options import Options, check_keys, describe, mapping, parse


@dataclass(frozen=True)
class Demo:
    rate: float = 0.5
    count: int = 3
    flag: bool = False
    name: str = "a"
    widths: tuple[int, ...] = (4, 4)
    names: tuple[str, ...] | None = None
    weights: dict[str, float] | None = None
    limit: int | None = None
    anything: Any = "free"

    def check(self, path: str) -> None:
        if self.count < 1:
            raise ConfigError(f"{path}.count must be ≥ 1, got {self.count}")


@dataclass(frozen=True)
class Needs:
    metric: str
    mode: str = "min"


def test_defaults_and_values_as_given():
    assert parse(Demo, {}, "demo") == Demo()
    assert parse(Demo, None, "demo") == Demo()
    got = parse(Demo, {"rate": 0.25, "name": "b", "flag": True, "anything": [1, {"x": 2}]}, "demo")
    assert (got.rate, got.name, got.flag, got.anything) == (0.25, "b", True, [1, {"x": 2}])


def test_unknown_key_names_the_closest_and_all_keys():
    with pytest.raises(ConfigError) as info:
        parse(Demo, {"rat": 1.0}, "demo")
    message = str(info.value)
    assert message.startswith("demo has no key 'rat' (did you mean 'rate'?); its keys: anything, count, flag")
    assert "\n" not in message


def test_owner_and_noun_name_the_section():
    with pytest.raises(ConfigError, match=r"model 'x' has no option 'cont' \(did you mean 'count'\?\)"):
        parse(Demo, {"cont": 1}, "model", owner="model 'x'", noun="option")


@pytest.mark.parametrize(
    "values, message",
    [
        ({"count": "many"}, "demo.count must be an integer, got 'many'"),
        ({"count": 2.5}, "demo.count must be an integer, got 2.5"),
        ({"rate": "fast"}, "demo.rate must be a finite number, got 'fast'"),
        ({"rate": float("nan")}, "demo.rate must be a finite number, got nan"),
        ({"name": 3}, "demo.name must be a string, got 3"),
        ({"widths": 4}, "demo.widths must be a list of integers, got 4"),
        ({"widths": [4, 0.5]}, r"demo.widths must be a list of integers, got \[4, 0.5\]"),
        ({"limit": "x"}, "demo.limit must be an integer or null, got 'x'"),
    ],
)
def test_wrong_type_is_one_line_with_key_value_and_type(values, message):
    with pytest.raises(ConfigError, match=message):
        parse(Demo, values, "demo")


def test_int_becomes_float_and_list_becomes_tuple():
    got = parse(Demo, {"rate": 1, "widths": [8, 16], "names": ["a", "b"]}, "demo")
    assert got.rate == 1.0 and isinstance(got.rate, float)
    assert got.widths == (8, 16) and got.names == ("a", "b")


def test_a_single_string_is_a_one_item_list_of_strings():
    assert parse(Demo, {"names": "image"}, "demo").names == ("image",)
    with pytest.raises(ConfigError, match="demo.widths must be a list of integers"):
        parse(Demo, {"widths": "8"}, "demo")


@pytest.mark.parametrize("key, value", [("flag", 1), ("flag", "yes"), ("count", True), ("rate", False)])
def test_bools_are_strict(key, value):
    with pytest.raises(ConfigError, match=f"demo.{key} must be"):
        parse(Demo, {key: value}, "demo")


def test_bool_message_says_true_or_false():
    with pytest.raises(ConfigError, match="demo.flag must be true or false, got 'yes'"):
        parse(Demo, {"flag": "yes"}, "demo")


def test_nested_mapping_is_coerced_key_by_key():
    got = parse(Demo, {"weights": {"image": 1, "trajectory": 0.5}}, "demo")
    assert got.weights == {"image": 1.0, "trajectory": 0.5} and isinstance(got.weights["image"], float)
    with pytest.raises(ConfigError, match="demo.weights must be a mapping of strings to finite numbers or null"):
        parse(Demo, {"weights": {"image": "heavy"}}, "demo")
    with pytest.raises(ConfigError, match=r"demo.weights must be .*, got \[1, 2\]"):
        parse(Demo, {"weights": [1, 2]}, "demo")


def test_the_given_mapping_is_not_shared():
    weights = {"image": 1.0}
    got = parse(Demo, {"weights": weights}, "demo")
    weights["image"] = 5.0
    assert got.weights == {"image": 1.0}


def test_check_is_called_with_the_path(monkeypatch):
    with pytest.raises(ConfigError, match="train.count must be ≥ 1, got 0"):
        parse(Demo, {"count": 0}, "train")
    calls = []
    monkeypatch.setattr(Demo, "check", lambda self, path: calls.append(path))
    parse(Demo, {}, "demo")
    parse(Demo, {"count": 0}, "demo", check=False)
    assert calls == ["demo"]


def test_base_gives_the_defaults():
    got = parse(Demo, {"rate": 0.1}, "demo", base=Demo(count=7))
    assert (got.rate, got.count) == (0.1, 7)


def test_required_field():
    assert parse(Needs, {"metric": "loss"}, "early_stopping") == Needs("loss")
    with pytest.raises(ConfigError, match="early_stopping.metric is required"):
        parse(Needs, {"mode": "max"}, "early_stopping")


def test_a_section_must_be_a_mapping():
    assert mapping(None, "budget") == {}
    with pytest.raises(ConfigError, match="budget must be a mapping or null, got 4"):
        parse(Demo, 4, "budget")


def test_check_keys_lists_the_known_keys_as_given():
    check_keys({"b": 1}, ["b", "a"], "smoke")
    with pytest.raises(ConfigError, match=r"smoke has no key 'c'; its keys: b, a$"):
        check_keys({"c": 1}, ["b", "a"], "smoke")


def test_describe():
    assert describe(dict[str, float] | None) == "a mapping of strings to finite numbers or null"
    assert describe(tuple[str, ...]) == "a list of strings"
    assert describe(Mapping[str, Any]) == "a mapping of strings to values"


@dataclass(frozen=True)
class Family(Options):
    noise: float = 0.5
    share: float = 0.0
    mode: str = "one"


@dataclass(frozen=True)
class Variant(Family, defaults={"share": 0.5, "mode": "all"}):
    extra: int = 1


def test_defaults_keyword_changes_inherited_defaults_without_redeclaring():
    assert Variant() == Variant(noise=0.5, share=0.5, mode="all", extra=1)
    assert [f.name for f in dataclasses.fields(Variant)] == ["noise", "share", "mode", "extra"]
    assert Family().share == 0.0  # the base keeps its own
    assert parse(Variant, {"share": 1}, "model").share == 1.0


def test_defaults_keyword_refuses_an_unknown_field():
    with pytest.raises(TypeError, match="no base class declares"):

        @dataclass(frozen=True)
        class Bad(Family, defaults={"shar": 0.5}):
            pass
