"""Run configuration: frozen dataclasses built from YAML, CLI flags and `--set key=value`.

Layout (YAML and dotted --set keys share it):

    model:      {name: gmcwd, <model options>}
    dataset:    {name: synth-mhd, data_dir: null, <dataset options>}
    train:      {optimizer: adam, lr: 0.001, momentum: 0.9, weight_decay: 0.0, epochs: 5, batch_size: 64}
    classifier: {optimizer: adam, lr: 0.001, momentum: 0.9, weight_decay: 0.0, epochs: 10, batch_size: 64}
    eval:       {grid: smoke, batch_size: 512, max_samples: null, batched: true, split: test}
    seeds:      [0, 1, 2]        # or "0-2"
    device:     auto             # auto | cpu | cuda | cuda:N

Everything is checked here, before any data is loaded or any model trained.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from robustmm.errors import ConfigError
from robustmm.files import read_yaml
from robustmm.options import mapping, parse

OPTIMIZERS = ("adam", "adamw", "sgd")
SPLITS = ("test", "validation")
"""The splits a trained model is evaluated on: a sweep selects on validation, `run` and `report`
state test numbers unless told otherwise (train only fits the model)."""


@dataclass(frozen=True)
class OptimConfig:
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    epochs: int = 10
    batch_size: int = 64

    def check(self, section: str) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"{section}.optimizer {self.optimizer!r} unknown; use one of {', '.join(OPTIMIZERS)}")
        if not math.isfinite(self.lr):
            raise ConfigError(f"{section}.lr must be a finite number, got {self.lr}")
        if not self.lr > 0:
            raise ConfigError(f"{section}.lr must be > 0, got {self.lr}")
        if self.epochs < 0:
            raise ConfigError(f"{section}.epochs must be ≥ 0, got {self.epochs}")
        if self.batch_size < 2:
            raise ConfigError(f"{section}.batch_size must be ≥ 2, got {self.batch_size}")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ConfigError(f"{section}: weight_decay must be ≥ 0 and momentum in [0, 1)")


@dataclass(frozen=True)
class EvalConfig:
    grid: Any = "smoke"
    batch_size: int = 512
    max_samples: int | None = None
    batched: bool = True
    split: str = "test"

    def check(self, section: str) -> None:
        if self.split not in SPLITS:
            raise ConfigError(f"{section}.split {self.split!r} unknown; evaluate on one of {', '.join(SPLITS)}")
        if self.batch_size < 1:
            raise ConfigError(f"{section}.batch_size must be ≥ 1, got {self.batch_size}")
        if self.max_samples is not None and self.max_samples < 1:
            raise ConfigError(f"{section}.max_samples must be ≥ 1 or null, got {self.max_samples}")


@dataclass(frozen=True)
class RunConfig:
    model: str = "gmcwd"
    model_options: Mapping[str, Any] = field(default_factory=dict)
    dataset: str = "synth-mhd"
    dataset_options: Mapping[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    train: OptimConfig = OptimConfig(epochs=5)
    classifier: OptimConfig = OptimConfig()
    eval: EvalConfig = EvalConfig()
    seeds: tuple[int, ...] = (0,)
    device: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        """The YAML layout; `from_dict(to_dict())` gives the same config back."""
        return {
            "model": {"name": self.model, **copy.deepcopy(dict(self.model_options))},
            "dataset": {"name": self.dataset, "data_dir": self.data_dir, **copy.deepcopy(dict(self.dataset_options))},
            "train": dataclasses.asdict(self.train),
            "classifier": dataclasses.asdict(self.classifier),
            "eval": dataclasses.asdict(self.eval),
            "seeds": list(self.seeds),
            "device": self.device,
        }


SECTIONS = ("model", "dataset", "train", "classifier", "eval", "seeds", "device")


MAX_SEEDS = 10_000
"""The most seeds one range may hold (`0-999999999999` would build a list of that length)."""


def parse_seeds(value: Any) -> tuple[int, ...]:
    """'0-2' -> (0, 1, 2); '0,3,5' -> (0, 3, 5); 7 -> (7,); [1, 2] -> (1, 2)."""
    if isinstance(value, bool):
        raise ConfigError(f"seeds must be integers, got {value!r}")
    if isinstance(value, int):
        seeds: list[int] = [value]
    elif isinstance(value, (list, tuple)):
        seeds = []
        for v in value:
            seeds.extend(parse_seeds(v))
    elif isinstance(value, str):
        seeds = []
        try:
            for part in value.split(","):
                part = part.strip()
                if "-" in part[1:]:
                    lo, hi = (int(p) for p in part.split("-", 1))
                    if hi < lo:
                        raise ConfigError(
                            f"seeds {value!r} not understood: the range {part} is reversed; write {hi}-{lo}"
                        )
                    if hi - lo >= MAX_SEEDS:
                        raise ConfigError(f"seeds {value!r}: the range {part} holds more than {MAX_SEEDS} seeds")
                    seeds.extend(range(lo, hi + 1))
                else:
                    seeds.append(int(part))
        except ValueError:
            raise ConfigError(f"seeds {value!r} not understood; write e.g. 0-9, 0,3,5 or 7") from None
    else:
        raise ConfigError(f"seeds {value!r} not understood; write e.g. 0-9, 0,3,5 or 7")
    if not seeds or any(s < 0 for s in seeds):
        raise ConfigError(f"seeds {value!r} must be non-negative integers, e.g. 0-9")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds {value!r} repeat a seed")
    return tuple(seeds)


def _section(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key) or None
    if isinstance(value, str) and key in ("model", "dataset"):
        return {"name": value}
    return mapping(value, f"config section {key!r}")


def from_dict(raw: Mapping[str, Any]) -> RunConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"a run config must be a mapping of sections ({', '.join(SECTIONS)}), got {raw!r}")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown config section {unknown[0]!r}; sections: {', '.join(SECTIONS)}")
    model = _section(raw, "model")
    dataset = _section(raw, "dataset")
    model_name = model.pop("name", RunConfig.model)
    dataset_name = dataset.pop("name", RunConfig.dataset)
    data_dir = dataset.pop("data_dir", None)
    cfg = RunConfig(
        model=str(model_name),
        model_options=model,
        dataset=str(dataset_name),
        dataset_options=dataset,
        data_dir=None if data_dir is None else str(data_dir),
        train=parse(OptimConfig, _section(raw, "train"), "train", base=RunConfig.train),
        classifier=parse(OptimConfig, _section(raw, "classifier"), "classifier"),
        eval=parse(EvalConfig, _section(raw, "eval"), "eval"),
        seeds=parse_seeds(raw.get("seeds", 0)),
        device=str(raw.get("device", "auto")),
    )
    if not (cfg.device in ("auto", "cpu", "cuda") or cfg.device.startswith("cuda:")):
        raise ConfigError(f"device {cfg.device!r} unknown; use auto, cpu, cuda or cuda:N")
    return cfg


def load_yaml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """The mapping in a YAML file (empty file: {}); every problem is one ConfigError naming it."""
    return read_yaml(path, what, holding="a mapping of sections")


def apply_set(raw: dict[str, Any], assignment: str) -> None:
    """Apply one `a.b.c=value` in place; the value is parsed as YAML (numbers, lists, null)."""
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {assignment!r} must look like section.key=value, e.g. train.lr=0.01")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"--set {assignment!r}: value {text!r} is not valid YAML") from None
    set_path(raw, key.strip(), value, where=f"--set {assignment!r}")


def set_path(raw: dict[str, Any], key: str, value: Any, *, where: str | None = None) -> None:
    """Set the dotted config key `key` (e.g. model.recon_weights.image) to `value`, in place."""
    where = where or f"key {key!r}"
    parts = key.split(".")
    if parts[0] not in SECTIONS or not all(parts):
        raise ConfigError(f"{where}: unknown section {parts[0]!r}; sections: {', '.join(SECTIONS)}")
    node = raw
    for p in parts[:-1]:
        if isinstance(node.get(p), str) and p in ("model", "dataset"):
            node[p] = {"name": node[p]}
        if node.get(p) is None:
            node[p] = {}
        node = node[p]
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: {p!r} is not a section")
    node[parts[-1]] = value


def merge(raw: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge `overrides` into a copy of `raw` (mappings merge, anything else replaces)."""
    out = copy.deepcopy(raw)
    for k, v in overrides.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(dict(out[k]), v)
        else:
            out[k] = copy.deepcopy(v)
    return out
