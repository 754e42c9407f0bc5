"""A sweep as data: `search_spaces/*.yaml` -> `SweepSpec`, every part checked before Ray starts.

    name: gmcwd_weights                 # MLflow experiment and Optuna study name
    description: ...
    run: {model: {name: gmcwd}, ...}    # the fixed settings: a run config (`robustmm run --config`);
                                        # its eval.split is validation: trials never see test
    space:                              # dotted run-config keys -> distributions
      model.noise_sigma: {type: float, low: 0.0, high: 1.0}
      train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      train.batch_size: {type: categorical, choices: [32, 64, 128]}
      model.noise_mode: {type: categorical, choices: [one, all]}
      model.tau: {type: float, low: 0.05, high: 0.5, when: {model.noise_mode: all}}   # conditional
    objectives: [clean_accuracy, {name: worst_modality_auc, attack: pgd}]   # 2 or more
    sampler: {name: tpe, seed: 0}       # tpe | nsga2 | random | grid | gp, plus sampler options
    budget: {num_samples: 32, max_concurrent: 4, time_budget_s: null}
    resources: {cpu: 1, gpu: 0.25}      # per trial; fractional GPUs pack trials onto one GPU
    early_stopping: null                # or {metric: representation/loss, mode: min, grace_period: 2}
    checkpoint: {every: 2, keep: 2}     # epochs between trial checkpoints
    failure: {max_failures: 2}          # crashed trials retry from their last checkpoint
    smoke: {...}                        # overrides applied by --smoke (same layout)

The space is compiled to an Optuna define-by-run function, so conditional parameters are
sampled only when their condition holds (and take the run config's value otherwise).

A sweep selects on the validation split: every trial is scored there (`eval.split` is set to
validation; a sweep that asks for test is refused). Test numbers come from `robustmm pick`, whose
config evaluates on test, then `robustmm run`.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from robustmm.config import RunConfig, from_dict, load_yaml, merge, set_path
from robustmm.errors import ConfigError
from robustmm.models.base import plan_for
from robustmm.objectives import Objective, parse_objectives
from robustmm.options import check_keys, did_you_mean, mapping, parse

SECTIONS = (
    "name",
    "description",
    "run",
    "space",
    "objectives",
    "sampler",
    "budget",
    "resources",
    "early_stopping",
    "checkpoint",
    "failure",
    "smoke",
)
MAX_NAME = 100
"""Longest sweep name: it becomes a folder and a Ray experiment directory."""
SAMPLERS = ("tpe", "nsga2", "random", "grid", "gp")
SWEEP_SPLIT = "validation"
"""The split every trial is scored on; test stays unseen until `robustmm pick` + `robustmm run`."""
TEST_NUMBERS = (
    "for test numbers run `robustmm pick DIR --trial N --out picked.yaml`, then `robustmm run --config picked.yaml`"
)
PARAM_TYPES = ("float", "int", "categorical")
CLASSIFIER_METRICS = ("loss", "train_accuracy")


@dataclass(frozen=True)
class RangeSpec:
    """A float or int parameter as the YAML writes it: {type, low, high, log, step, when}."""

    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    when: Any = None

    def check(self, path: str) -> None:
        low, high, step = self.low, self.high, self.step
        if low is None or high is None:
            raise ConfigError(f"{path}: a {self.type} parameter needs low and high")
        if self.type == "int" and not (low.is_integer() and high.is_integer()):
            raise ConfigError(f"{path}: an int parameter needs integer low and high, got {low:g}, {high:g}")
        if not low < high:
            raise ConfigError(f"{path}: the range [{low:g}, {high:g}] is empty; low must be below high")
        if self.log and low <= 0:
            raise ConfigError(f"{path}: a log-scaled range needs low > 0, got {low:g}")
        if step is None:
            return
        if step <= 0 or step > high - low:
            raise ConfigError(f"{path}.step must be in (0, high - low], got {step:g}")
        if self.log:
            raise ConfigError(f"{path}: give either log or step, not both")
        if self.type == "int" and not step.is_integer():
            raise ConfigError(f"{path}.step of an int parameter must be an integer, got {step:g}")


@dataclass(frozen=True)
class ChoiceSpec:
    """A categorical parameter as the YAML writes it: {type, choices, when}."""

    type: str
    choices: Any = None
    when: Any = None

    def check(self, path: str) -> None:
        choices = self.choices
        if not isinstance(choices, (list, tuple)) or not choices:
            raise ConfigError(f"{path}: choices must be a non-empty list, got {choices!r}")
        if len({repr(c) for c in choices}) != len(choices):
            raise ConfigError(f"{path}: choices {choices!r} repeat a value")
        for c in choices:
            if not (c is None or isinstance(c, (bool, int, float, str))):
                raise ConfigError(f"{path}: choice {c!r} must be a number, a string, true/false or null")


@dataclass(frozen=True)
class Param:
    """One searched config key and its distribution."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    @classmethod
    def parse(cls, key: str, raw: Any) -> Param:
        where = f"space.{key}"
        if not isinstance(raw, Mapping) or raw.get("type") not in PARAM_TYPES:
            raise ConfigError(
                f"{where} must be a mapping with type one of {', '.join(PARAM_TYPES)}, got {raw!r}; "
                "e.g. {type: float, low: 0.0, high: 1.0}"
            )
        if raw["type"] == "categorical":
            c = parse(ChoiceSpec, raw, where)
            return cls(key, c.type, choices=tuple(c.choices), when=cls._parse_when(where, c.when))
        r = parse(RangeSpec, raw, where)
        low, high, step = r.low, r.high, r.step  # floats, also where a float range has whole-number ends
        if r.type == "int":
            low, high, step = int(low), int(high), None if step is None else int(step)  # type: ignore[arg-type]
        return cls(key, r.type, low=low, high=high, log=r.log, step=step, when=cls._parse_when(where, r.when))

    @staticmethod
    def _parse_when(where: str, raw: Any) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        if raw is None:
            return ()
        if not isinstance(raw, Mapping) or not raw:
            raise ConfigError(f"{where}.when must map parameter keys to values, e.g. {{model.noise_mode: all}}")
        return tuple((str(k), tuple(v) if isinstance(v, (list, tuple)) else (v,)) for k, v in raw.items())

    def active(self, chosen: Mapping[str, Any]) -> bool:
        return all(k in chosen and chosen[k] in values for k, values in self.when)

    def suggest(self, trial: Any) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def grid_values(self) -> list[Any]:
        """The values a grid search tries: choices, or low..high in `step`s."""
        if self.type == "categorical":
            return list(self.choices)
        if self.step is None and self.type == "float":
            raise ConfigError(f"space.{self.key}: the grid sampler needs a step (or choices) for every float parameter")
        step = self.step or 1
        count = int(math.floor((self.high - self.low) / step + 1e-9)) + 1
        values = [self.low + i * step for i in range(count)]
        return [int(v) for v in values] if self.type == "int" else [round(v, 12) for v in values]

    def corners(self) -> list[Any]:
        """Values to validate the run config with: both ends, or every choice."""
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]


def _at_least(where: str, value: int, low: int) -> None:
    if value < low:
        raise ConfigError(f"{where} must be an integer ≥ {low}, got {value!r}")


@dataclass(frozen=True)
class EarlyStopping:
    """ASHA on one per-epoch metric; trials it stops never enter the Pareto front."""

    metric: str
    mode: str = "min"
    grace_period: int = 1
    reduction_factor: int = 3

    def check(self, path: str) -> None:
        if self.mode not in ("min", "max"):
            raise ConfigError(f"{path}.mode must be min or max, got {self.mode!r}")
        _at_least(f"{path}.grace_period", self.grace_period, 1)
        _at_least(f"{path}.reduction_factor", self.reduction_factor, 2)


@dataclass(frozen=True)
class Sampler:
    """The sampler section's own keys; the others are the Optuna sampler's options."""

    name: str = "tpe"
    seed: int = 0

    def check(self, path: str) -> None:
        if self.name not in SAMPLERS:
            raise ConfigError(
                f"sampler {self.name!r} unknown{did_you_mean(self.name, SAMPLERS)}; use one of {', '.join(SAMPLERS)}"
            )
        _at_least(f"{path}.seed", self.seed, 0)


@dataclass(frozen=True)
class Budget:
    num_samples: int = 16
    max_concurrent: int = 2
    time_budget_s: float | None = None

    def check(self, path: str) -> None:
        _at_least(f"{path}.num_samples", self.num_samples, 1)
        _at_least(f"{path}.max_concurrent", self.max_concurrent, 1)
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ConfigError(f"{path}.time_budget_s must be > 0 or null, got {self.time_budget_s:g}")


@dataclass(frozen=True)
class Resources:
    """Per trial; fractional GPUs pack trials onto one GPU."""

    cpu: float = 1.0
    gpu: float = 0.0

    def check(self, path: str) -> None:
        cpu, gpu = self.cpu, self.gpu
        if cpu <= 0 or gpu < 0 or (gpu > 1 and not gpu.is_integer()):
            raise ConfigError(
                f"{path}: cpu must be > 0 and gpu ≥ 0 (a fraction ≤ 1 or whole GPUs), got {cpu:g}, {gpu:g}"
            )


@dataclass(frozen=True)
class Checkpoint:
    every: int = 2
    keep: int = 2

    def check(self, path: str) -> None:
        _at_least(f"{path}.every", self.every, 1)
        _at_least(f"{path}.keep", self.keep, 1)


@dataclass(frozen=True)
class Failure:
    max_failures: int = 2

    def check(self, path: str) -> None:
        _at_least(f"{path}.max_failures", self.max_failures, 0)


@dataclass(frozen=True)
class SweepSpec:
    name: str
    run: Mapping[str, Any]
    params: tuple[Param, ...]
    objectives: tuple[Objective, ...]
    description: str = ""
    sampler: str = "tpe"
    sampler_seed: int = 0
    sampler_options: Mapping[str, Any] = field(default_factory=dict)
    num_samples: int = 16
    max_concurrent: int = 2
    time_budget_s: float | None = None
    cpu: float = 1.0
    gpu: float = 0.0
    early_stopping: EarlyStopping | None = None
    checkpoint_every: int = 2
    checkpoint_keep: int = 2
    max_failures: int = 2
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def keys(self) -> list[str]:
        return [o.key for o in self.objectives]

    @property
    def modes(self) -> list[str]:
        return [o.mode for o in self.objectives]

    def run_config(self, values: Mapping[str, Any] | None = None) -> RunConfig:
        """The run config of one trial: the fixed settings with the sampled `values` set."""
        raw = copy.deepcopy(dict(self.run))
        for key, value in (values or {}).items():
            if key in {p.key for p in self.params}:
                set_path(raw, key, value, where=f"space.{key}")
        return from_dict(raw)

    def define(self, trial: Any) -> dict[str, Any]:
        """Optuna define-by-run: sample each parameter whose condition holds, in order; returns
        the sampled values by key."""
        chosen: dict[str, Any] = {}
        for p in self.params:
            if p.active(chosen):
                chosen[p.key] = p.suggest(trial)
        return chosen

    def grid(self) -> dict[str, list[Any]]:
        if any(p.when for p in self.params):
            raise ConfigError("the grid sampler cannot search conditional parameters (when:); use tpe or random")
        return {p.key: p.grid_values() for p in self.params}

    def make_sampler(self, seed_offset: int = 0) -> Any:
        """The seeded Optuna sampler named by the spec (seed + `seed_offset`). The grid sampler
        keeps its seed: it maps trial number k to point k of the grid shuffled by that seed, so a
        reseeded one (after a resume) would hand out points the study already ran."""
        import optuna

        offset = 0 if self.sampler == "grid" else seed_offset
        opts, seed = dict(self.sampler_options), self.sampler_seed + offset
        try:
            if self.sampler == "tpe":
                return optuna.samplers.TPESampler(seed=seed, **opts)
            if self.sampler == "nsga2":
                return optuna.samplers.NSGAIISampler(seed=seed, **opts)
            if self.sampler == "random":
                return optuna.samplers.RandomSampler(seed=seed, **opts)
            if self.sampler == "gp":
                return optuna.samplers.GPSampler(seed=seed, **opts)
            return optuna.samplers.GridSampler(self.grid(), seed=seed, **opts)
        except TypeError as e:
            raise ConfigError(f"sampler {self.sampler!r}: bad option in {opts!r} ({e})") from None

    def trial_budget(self) -> int:
        """How many epochs one trial reports at most (ASHA's max_t, which stops a trial there): the
        maximum over every combination of the parameters' ends and choices, since epoch counts can
        multiply (a CRMT trial reports rounds × (step-1 + step-2) epochs and no classifier stage)."""
        best = 0
        for combo in itertools.islice(itertools.product(*(p.corners() for p in self.params)), 100_000):
            chosen: dict[str, Any] = {}
            for p, v in zip(self.params, combo, strict=True):
                if p.active(chosen):
                    chosen[p.key] = v
            c = self.run_config(chosen)
            best = max(best, plan_for(c.model, c.model_options, c.train, c.classifier).total_epochs)
        return len(self.run_config().seeds) * best

    def to_yaml(self) -> str:
        return yaml.safe_dump(dict(self.raw), sort_keys=False)


def _section(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    return mapping(raw.get(key), f"sweep section {key!r}")


def _params(space: Mapping[str, Any]) -> tuple[Param, ...]:
    """The space's parameters, each `when:` naming only parameters listed before it."""
    if not space:
        raise ConfigError("the sweep's space is empty; name at least one config key to search")
    if "eval.split" in space:
        raise ConfigError(f"space.eval.split: a sweep selects on validation, it searches no split; {TEST_NUMBERS}")
    params = tuple(Param.parse(str(k), v) for k, v in space.items())
    seen: set[str] = set()
    for p in params:
        for k, _ in p.when:
            if k not in seen:
                raise ConfigError(f"space.{p.key}.when names {k!r}, which is not a parameter listed before it")
        seen.add(p.key)
    return params


def _sampler(raw: Mapping[str, Any]) -> tuple[Sampler, dict[str, Any]]:
    """The sampler (a name, or {name, seed, **Optuna options}) and its Optuna options."""
    value = raw.get("sampler")
    section = {"name": value} if isinstance(value, str) else _section(raw, "sampler")
    own = {k: v for k, v in section.items() if k in ("name", "seed")}
    return parse(Sampler, own, "sampler"), {k: v for k, v in section.items() if k not in own}


def parse_sweep(raw: Mapping[str, Any]) -> SweepSpec:
    """A sweep mapping (the YAML layout) -> SweepSpec, or a ConfigError naming the bad part."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"a sweep must be a mapping of sections ({', '.join(SECTIONS)}), got {raw!r}")
    check_keys(raw, SECTIONS, "the sweep")
    raw = dict(raw)
    name = raw.get("name")
    if (
        not isinstance(name, str)
        or not name.isascii()
        or not all(c.isalnum() or c in "_-." for c in name)
        or name.strip(".") == ""
        or len(name) > MAX_NAME
    ):
        shown = f"{name[:40]!r}… ({len(name)} characters)" if isinstance(name, str) and len(name) > 60 else repr(name)
        raise ConfigError(
            f"sweep name {shown} must be a plain file name: 1-{MAX_NAME} ASCII letters, digits, _ - . "
            "(not '.' or '..'); it names the MLflow experiment, the Optuna study and runs/<name>"
        )
    run = on_validation(_section(raw, "run"))
    params = _params(_section(raw, "space"))
    objectives = tuple(parse_objectives(raw.get("objectives") or []))
    if len(objectives) < 2:
        raise ConfigError(
            f"a sweep needs 2 or more objectives to trade off, got {len(objectives)}; "
            "e.g. [clean_accuracy, {name: worst_modality_auc, attack: pgd}]"
        )
    sampler, sampler_options = _sampler(raw)
    budget = parse(Budget, _section(raw, "budget"), "budget")
    resources = parse(Resources, _section(raw, "resources"), "resources")
    ckpt = parse(Checkpoint, _section(raw, "checkpoint"), "checkpoint")
    failure = parse(Failure, _section(raw, "failure"), "failure")
    es = raw.get("early_stopping")
    spec = SweepSpec(
        name=name,
        run=run,
        params=params,
        objectives=objectives,
        description=str(raw.get("description") or ""),
        sampler=sampler.name,
        sampler_seed=sampler.seed,
        sampler_options=sampler_options,
        num_samples=budget.num_samples,
        max_concurrent=budget.max_concurrent,
        time_budget_s=budget.time_budget_s,
        cpu=resources.cpu,
        gpu=resources.gpu,
        early_stopping=None if es is None else parse(EarlyStopping, es, "early_stopping"),
        checkpoint_every=ckpt.every,
        checkpoint_keep=ckpt.keep,
        max_failures=failure.max_failures,
        raw={k: v for k, v in raw.items() if k != "smoke"},
    )
    if sampler.name == "grid":
        spec.grid()  # every parameter must have grid values
    corner_configs(spec)
    return spec


def on_validation(run: dict[str, Any]) -> dict[str, Any]:
    """The sweep's run config with eval.split = validation; run.eval.split: test is refused."""
    ev = run.get("eval")
    if ev is not None and not isinstance(ev, Mapping):
        return run  # from_dict names the bad section
    split = (ev or {}).get("split", SWEEP_SPLIT)
    if split != SWEEP_SPLIT:
        raise ConfigError(
            f"run.eval.split is {split!r}, but a sweep selects on validation (its objectives never see test); "
            f"drop eval.split — {TEST_NUMBERS}"
        )
    return {**run, "eval": {**(ev or {}), "split": SWEEP_SPLIT}}


def corner_configs(spec: SweepSpec) -> list[RunConfig]:
    """Run configs that together touch every value a parameter can take: both ends of each
    range and every choice, one parameter at a time (the rest at the run config's values).
    Building them finds a key the run config does not have; building the model from them (once
    the data are known) finds a bad model option."""
    out = [spec.run_config()]
    for p in spec.params:
        condition = {k: values[0] for k, values in p.when}  # a conditional parameter with its condition met
        out += [spec.run_config({**condition, p.key: v}) for v in p.corners()]
    return out


def apply_smoke(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The sweep with its `smoke:` overrides applied (a quick version of the same sweep)."""
    overrides = _section(raw, "smoke")
    if not overrides:
        raise ConfigError("--smoke asked for, but the sweep has no smoke: section")
    check_keys(overrides, [s for s in SECTIONS if s not in ("smoke", "name")], "smoke")
    return merge(dict(raw), overrides)


def _drop_other_dataset_options(raw: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Another dataset named by the overrides starts from its own defaults, not this one's options."""
    new = ((overrides.get("run") or {}).get("dataset") or {}).get("name")
    run = raw.get("run")
    dataset = run.get("dataset") if isinstance(run, Mapping) else None
    old = dataset.get("name") if isinstance(dataset, Mapping) else dataset
    if new is not None and old is not None and new != old:
        raw = copy.deepcopy(raw)
        raw["run"]["dataset"] = {}
    return raw


def load_sweep(path: str | Path, *, smoke: bool = False, overrides: Mapping[str, Any] | None = None) -> SweepSpec:
    """Read a search-space YAML; then the smoke overrides (with `smoke`), then `overrides`
    (same layout, e.g. from command-line flags) win."""
    raw = load_yaml(path, "search space")
    if smoke:
        raw = apply_smoke(raw)
    if overrides:
        raw = _drop_other_dataset_options(raw, overrides)
        raw = merge(raw, overrides)
    return parse_sweep(raw)
