from __future__ import annotations

import pytest

from robustmm import config as C
from robustmm.errors import ConfigError


def test_seeds_forms():
    assert C.parse_seeds("0-2") == (0, 1, 2)
    assert C.parse_seeds("0,3,5") == (0, 3, 5)
    assert C.parse_seeds(7) == (7,)
    assert C.parse_seeds([1, "3-4"]) == (1, 3, 4)
    for bad in ("2-0", "a", "-1", "1,1", True):
        with pytest.raises(ConfigError):
            C.parse_seeds(bad)


def test_round_trip_and_set():
    raw = {"model": {"name": "gmc", "tau": 0.2}, "train": {"epochs": 3}, "seeds": "0-1"}
    C.apply_set(raw, "train.lr=0.01")
    C.apply_set(raw, "model.recon_weights.image=0.4")
    cfg = C.from_dict(raw)
    assert cfg.model == "gmc" and cfg.model_options == {"tau": 0.2, "recon_weights": {"image": 0.4}}
    assert cfg.train.lr == 0.01 and cfg.train.epochs == 3 and cfg.seeds == (0, 1)
    assert C.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"modle": {}}, "unknown config section 'modle'"),
        ({"train": {"lr": -1.0}}, "train.lr must be > 0"),
        ({"train": {"epochs": -1}}, "train.epochs must be ≥ 0"),
        ({"train": {"optimizer": "lbfgs"}}, "train.optimizer 'lbfgs' unknown"),
        ({"train": {"learning_rate": 0.1}}, "train has no key 'learning_rate'"),
        ({"train": {"epochs": "many"}}, "train.epochs must be an integer, got 'many'"),
        ({"eval": {"batch_size": 0}}, "eval.batch_size must be ≥ 1"),
        ({"eval": {"split": "train"}}, "eval.split 'train' unknown; evaluate on one of test, validation"),
        ({"device": "tpu"}, "device 'tpu' unknown"),
    ],
)
def test_bad_values_name_the_value(raw, message):
    with pytest.raises(ConfigError, match=message):
        C.from_dict(raw)


def test_bad_yaml_names_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("model:\n  name: gmc\n   tau: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        C.load_yaml(p)
    with pytest.raises(ConfigError, match="does not exist"):
        C.load_yaml(tmp_path / "nope.yaml")


def test_set_syntax_errors():
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        C.apply_set({}, "train.lr")
    with pytest.raises(ConfigError, match="unknown section 'trian'"):
        C.apply_set({}, "trian.lr=1")
