"""Robustness objectives: one number per trial, computed from its evaluation result rows.

A sweep optimises (or reports) several of these at once. Each is a pure function of the rows
(schema: `robustmm.results.COLUMNS`), computed per seed and then averaged over seeds, so a
trial run with three seeds is scored like three trials averaged, never on a pooled grid.
"Perturbation cells" are the rows whose perturbation is neither ``clean`` nor ``missing``;
a "single-modality target" is a target without ``+``.

"Accuracy" below is the per-sample worst-case accuracy (`robustmm.worst_case`): a sample counts
at budget ε only if it is correct clean and under every attack of the same norm family at every
ε' ≤ ε on that target, and under every attack variant of the model (RGMC's ``rgmc[o-detached]``
rows). So a curve whose per-cell accuracy rises with ε (gradient masking) earns no credit for the
rise, and the variants are folded per sample, not per cell. Clean and missing-modality cells
are not nested: their worst case is their own accuracy. Rows without masks (written before the
evaluator kept them) fall back to the running minimum over ε of the per-cell accuracies.

| objective                                      | definition (per seed, then mean over seeds)                   |
| ---------------------------------------------- | ------------------------------------------------------------- |
| ``clean_accuracy``                             | accuracy of the clean row                                     |
| ``mean_robust_accuracy(attack=None)``          | mean accuracy over perturbation cells (of ``attack`` only)    |
| ``worst_modality_accuracy(attack=None)``       | per single-modality target the mean accuracy over its         |
|                                                | perturbation cells (of ``attack``); the minimum over targets  |
| ``auc(attack, target=None)``                   | area under accuracy-vs-ε, points (0, clean) and (ε, min       |
|                                                | accuracy of the cells at ε), trapezoid rule, divided by the   |
|                                                | largest ε, so in [0, 1]; ``target=None``: mean over targets   |
| ``worst_modality_auc(attack)``                 | minimum of ``auc(attack, target)`` over single-modality       |
|                                                | targets                                                       |
| ``missing_modality_accuracy(modality=None,``   | accuracy with ``modality`` missing; without a modality the    |
| ``reduce="min")``                              | min (or mean) over the missing-modality cells                 |
| ``certified_accuracy(radius, target=None)``    | share of test samples correct AND certified at L2 ``radius``  |
|                                                | on ``target``; None: the min over targets (the joint one)     |
| ``mean_certified_radius(target=None)``         | mean certified L2 radius (0 if misclassified); None: the min  |
|                                                | over targets                                                  |
| ``vulnerability_ratio`` (mode min)             | largest over smallest mean vulnerability η^(m) (1: balanced)  |

The last three need a certifying model (the CRMT family) and certified cells in the grid
(grid ``crmt``); they are not perturbations, so the accuracy objectives above skip them.

Every objective is maximised by default (``mode: max``). In a config an objective is a name,
``clean_accuracy``, or a dict, ``{name: worst_modality_auc, attack: pgd, mode: max}``. Its
metric key (for Ray, MLflow and Optuna) is the name followed by ``_<value>`` for each given
parameter in name order, e.g. ``auc_pgd_image``.

Why the choices: the minimum at a repeated ε (the thesis BIM grid has two step sizes per ε)
is the attacker's best, which is what a robustness claim must survive; the worst modality is
the one an attacker would pick. The grid is checked against every objective before any
training (`Objective.check`), so a sweep never trains for an objective its grid cannot score.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from robustmm.attacks import ATTACKS, Cell
from robustmm.attacks.grid import STATISTICS
from robustmm.errors import ConfigError, DataError, UnknownNameError
from robustmm.models.base import base_label
from robustmm.registry import Registry, did_you_mean
from robustmm.worst_case import COLUMN as WORST
from robustmm.worst_case import with_worst_case

MODES = ("max", "min")
REDUCES = ("min", "mean")
NOT_PERTURBATIONS = ("clean", "missing", "certified", *STATISTICS)
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")

Rows = pd.DataFrame | Iterable[Mapping[str, Any]]


class Lack(NamedTuple):
    """What a grid lacks for an objective, worded for the error `Objective.check` raises."""

    need: str
    add: str
    has: str = "the grid has none"


Need = Lack | None


@dataclass(frozen=True)
class ObjectiveEntry:
    """A registered objective: `robustmm list objectives` prints name, params and summary.

    `fn` scores the rows of one seed; `needs` inspects a grid's cells and says what is missing,
    so a bad objective/grid pair fails before training. Parameters are read from `fn`'s
    keyword-only arguments (no default = required) so the registry and the code cannot drift.
    """

    name: str
    fn: Callable[..., float]
    required: tuple[str, ...]
    defaults: tuple[tuple[str, Any], ...]
    mode: str
    summary: str
    label: str
    needs: Callable[..., Need]
    eps_attack: bool = False

    @property
    def param_names(self) -> tuple[str, ...]:
        return (*self.required, *(name for name, _ in self.defaults))

    def default(self, name: str) -> Any:
        return dict(self.defaults)[name]

    def signature(self) -> str:
        """E.g. ``auc(attack, target=None)``, for listings and error messages."""
        parts = [*self.required, *(f"{k}={v!r}" for k, v in self.defaults)]
        return f"{self.name}({', '.join(parts)})"


OBJECTIVES: Registry[ObjectiveEntry] = Registry("objective")


def objective(
    name: str, *, label: str, needs: Callable[..., Need], mode: str = "max", eps_attack: bool = False
) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Register a per-seed objective function under `name`."""

    def deco(fn: Callable[..., float]) -> Callable[..., float]:
        params = [p for p in inspect.signature(fn).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
        required = tuple(p.name for p in params if p.default is inspect.Parameter.empty)
        defaults = tuple((p.name, p.default) for p in params if p.default is not inspect.Parameter.empty)
        summary = (fn.__doc__ or name).strip().splitlines()[0]
        OBJECTIVES.add(name, ObjectiveEntry(name, fn, required, defaults, mode, summary, label, needs, eps_attack))
        return fn

    return deco


# --------------------------------------------------------------------------- parameter checks


def _check_attack(entry: ObjectiveEntry, value: Any) -> str:
    """A registered perturbation; for AUC objectives one with a budget ε (a curve needs an x axis)."""
    where = f"objective {entry.name!r}"
    if not isinstance(value, str):
        raise ConfigError(f"{where}: attack={value!r} is not an attack name; give e.g. attack: pgd")
    if value not in ATTACKS:
        raise UnknownNameError(f"{where}: {ATTACKS.unknown_message(value)}")
    with_eps = sorted(n for n, e in ATTACKS.items() if "eps" in e.param_names and n not in NOT_PERTURBATIONS)
    if value in NOT_PERTURBATIONS:
        hints = {"missing": "use missing_modality_accuracy", "clean": "use clean_accuracy"}
        hint = hints.get(value, "use certified_accuracy, mean_certified_radius or vulnerability_ratio")
        raise ConfigError(f"{where}: attack={value!r} is not a perturbation; {hint}")
    if entry.eps_attack and "eps" not in ATTACKS.get(value).param_names:
        params = ", ".join(ATTACKS.get(value).param_names) or "none"
        raise ConfigError(
            f"{where}: attack {value!r} has no budget eps (its parameters: {params}), so it has no "
            f"accuracy-vs-eps curve; pick one of {', '.join(with_eps)}"
        )
    return value


def _check_modalities(entry: ObjectiveEntry, name: str, value: Any) -> str | None:
    """A modality name, or several joined by '+' like the rows' target column."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or any(not part.strip() for part in value.split("+")):
        raise ConfigError(
            f"objective {entry.name!r}: {name}={value!r} is invalid; give a modality name like 'image' "
            "or several joined by '+' like 'image+trajectory'"
        )
    return value


def _check_reduce(entry: ObjectiveEntry, value: Any) -> str:
    if value not in REDUCES:
        raise ConfigError(f"objective {entry.name!r}: reduce={value!r} is invalid; give one of {', '.join(REDUCES)}")
    return value


def _check_radius(entry: ObjectiveEntry, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not np.isfinite(value):
        raise ConfigError(f"objective {entry.name!r}: radius={value!r} is invalid; give an L2 radius > 0, e.g. 0.5")
    return float(value)


_CHECKS: dict[str, Callable[[ObjectiveEntry, Any], Any]] = {
    "radius": _check_radius,
    "attack": _check_attack,
    "target": lambda e, v: _check_modalities(e, "target", v),
    "modality": lambda e, v: _check_modalities(e, "modality", v),
    "reduce": _check_reduce,
}


def _slug(value: Any) -> str:
    """A parameter value as a metric-key fragment: '+' (joint targets) and anything unsafe -> '-'."""
    return _KEY_UNSAFE.sub("-", str(value))


# --------------------------------------------------------------------------- the Objective


@dataclass(frozen=True)
class Objective:
    """One configured objective; frozen and hashable so it can key results and dedupe.

    Construction validates and canonicalises: params are sorted and any equal to the default
    dropped, so ``{name: auc, attack: pgd, target: null}`` and ``{name: auc, attack: pgd}`` are
    the same objective with the same key.
    """

    name: str
    params: tuple[tuple[str, Any], ...] = ()
    mode: str = "max"

    def __post_init__(self) -> None:
        entry = OBJECTIVES.get(self.name)
        given = dict(self.params)
        if len(given) != len(self.params):
            raise ConfigError(f"objective {self.name!r}: a parameter is given twice in {self.params!r}")
        for key in given:
            if key not in entry.param_names:
                known = ", ".join(entry.param_names) or "none"
                raise ConfigError(
                    f"objective {self.name!r} has no parameter {key!r}{did_you_mean(key, entry.param_names)}; "
                    f"its parameters: {known} (and mode: max|min); signature {entry.signature()}"
                )
        for key in entry.required:
            if given.get(key) is None:
                raise ConfigError(
                    f"objective {self.name!r} needs parameter {key!r}; e.g. {{name: {self.name}, {key}: ...}} "
                    f"(signature {entry.signature()})"
                )
        values = {k: _CHECKS[k](entry, v) if k in _CHECKS else v for k, v in given.items()}
        if (
            self.name == "missing_modality_accuracy"
            and values.get("modality") is not None
            and values.get("reduce", "min") != "min"
        ):
            raise ConfigError(
                "objective 'missing_modality_accuracy': reduce only applies without a modality (it reduces over "
                "the missing-modality cells); drop reduce or drop modality"
            )
        kept = tuple(sorted((k, v) for k, v in values.items() if k in entry.required or v != entry.default(k)))
        object.__setattr__(self, "params", kept)
        if self.mode not in MODES:
            raise ConfigError(f"objective {self.name!r}: mode={self.mode!r} is invalid; give one of {', '.join(MODES)}")

    @property
    def entry(self) -> ObjectiveEntry:
        return OBJECTIVES.get(self.name)

    @property
    def kwargs(self) -> dict[str, Any]:
        """All parameters, defaults included, as the objective function takes them."""
        return {**dict(self.entry.defaults), **dict(self.params)}

    @property
    def key(self) -> str:
        """Metric key for Ray/MLflow/Optuna: only [A-Za-z0-9_.-], e.g. ``auc_pgd_image``."""
        return self.name + "".join(f"_{_slug(v)}" for _, v in self.params)

    @property
    def label(self) -> str:
        """Human text for plots and tables, e.g. ``worst-modality AUC (pgd)``."""
        values = ", ".join(str(v) for _, v in self.params)
        text = self.entry.label + (f" ({values})" if values else "")
        return text + (" [minimised]" if self.mode == "min" else "")

    def check(self, cells: Sequence[Cell]) -> None:
        """Fail before any training when the grid cannot score this objective."""
        missing = self.entry.needs(list(cells), **self.kwargs)
        if missing is not None:
            raise ConfigError(
                f"objective {self.key} needs {missing.need}; {missing.has} — add {missing.add} to eval.grid "
                "or pick another objective"
            )

    def __call__(self, rows: Rows) -> float:
        """The objective on `rows`: computed per seed, then the mean over seeds (NaN if no rows)."""
        df = _frame(rows, eps=self.entry.eps_attack)
        if df.empty:
            return float("nan")
        kwargs = self.kwargs
        values = [self.entry.fn(part, **kwargs) for _, part in df.groupby("seed", sort=True, dropna=False)]
        return float(np.mean(values))

    def to_spec(self) -> dict[str, Any] | str:
        """The shortest spec `make_objective` turns back into this objective (for configs and logs)."""
        if not self.params and self.mode == self.entry.mode:
            return self.name
        spec: dict[str, Any] = {"name": self.name, **dict(self.params)}
        if self.mode != self.entry.mode:
            spec["mode"] = self.mode
        return spec


def make_objective(spec: str | Mapping[str, Any] | Objective) -> Objective:
    """``"clean_accuracy"`` or ``{"name": "worst_modality_auc", "attack": "pgd", "mode": "max"}``."""
    if isinstance(spec, Objective):
        return spec
    if isinstance(spec, str):
        return Objective(spec, (), OBJECTIVES.get(spec).mode)
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ConfigError(
            f"objective {spec!r} is neither a name ({', '.join(OBJECTIVES.names())}) nor a dict with a 'name', "
            "like {name: worst_modality_auc, attack: pgd}"
        )
    name = spec["name"]
    entry = OBJECTIVES.get(name)
    params = tuple((str(k), v) for k, v in spec.items() if k not in ("name", "mode"))
    return Objective(name, params, spec.get("mode", entry.mode))


def parse_objectives(specs: Sequence[str | Mapping[str, Any] | Objective]) -> list[Objective]:
    """Specs -> objectives, in order; at least one, and no two with the same metric key."""
    if isinstance(specs, (str, Mapping)) or not isinstance(specs, Sequence):
        raise ConfigError(f"objectives must be a list of objective specs, got {specs!r}")
    if not specs:
        raise ConfigError(f"give at least one objective; known: {', '.join(OBJECTIVES.names())}")
    objectives = [make_objective(s) for s in specs]
    seen: dict[str, Objective] = {}
    for o in objectives:
        if o.key in seen:
            raise ConfigError(
                f"objectives {seen[o.key].to_spec()!r} and {o.to_spec()!r} share the metric key {o.key!r}; "
                "each objective must be given once"
            )
        seen[o.key] = o
    return objectives


def compute_objectives(objectives: Sequence[Objective], rows: Rows) -> dict[str, float]:
    """{objective.key: value} for one trial's rows (converted to a frame once)."""
    df = _frame(rows, eps=any(o.entry.eps_attack for o in objectives))
    out: dict[str, float] = {}
    for o in objectives:
        if o.key in out:
            raise ConfigError(f"objective key {o.key!r} is given twice")
        out[o.key] = o(df)
    return out


# --------------------------------------------------------------------------- rows


def _frame(rows: Rows, eps: bool) -> pd.DataFrame:
    """Rows -> a frame of the columns objectives read, plain str/float typed.

    Refuses rows of several models or data sets: objectives score one trial, and silently
    averaging two models' clean rows would be a wrong number, not an error. The rows of a
    model's attack variants (`rgmc[o-detached]`) are the same model attacked another way: they
    enter its rows' worst case per sample and are then dropped. `accuracy` is the worst case.
    """
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if df.empty:
        return pd.DataFrame({"seed": [], "perturbation": [], "target": [], "eps": [], "accuracy": [], "value": []})
    needed = ["perturbation", "target", "accuracy", *(["eps"] if eps else [])]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise DataError(f"result rows lack column(s) {', '.join(missing)} needed by the objectives")
    df = with_worst_case(df)
    if "model" in df.columns:
        labels = df["model"].astype(str)
        df = df[labels == labels.map(base_label)]
    trials = [c for c in ("model", "dataset") if c in df.columns]
    if trials and len(df[trials].drop_duplicates()) > 1:
        pairs = ", ".join("/".join(map(str, r)) for r in df[trials].drop_duplicates().itertuples(index=False))
        raise DataError(f"objectives score one trial but the rows hold several {'/'.join(trials)}: {pairs}")
    return pd.DataFrame(
        {
            "seed": df["seed"].to_numpy() if "seed" in df.columns else np.zeros(len(df), dtype=np.int64),
            "perturbation": df["perturbation"].astype(str).to_numpy(),
            "target": df["target"].astype(str).to_numpy(),
            "eps": pd.to_numeric(df["eps"], errors="coerce").to_numpy(float) if "eps" in df.columns else np.nan,
            "accuracy": df[WORST].to_numpy(float),
            "value": pd.to_numeric(df["value"], errors="coerce").to_numpy(float) if "value" in df.columns else np.nan,
        }
    )


def _mean(values: pd.Series | Sequence[float]) -> float:
    """Plain mean that keeps NaN (pandas' skips it): a failed cell must not vanish from a score."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()) if arr.size else float("nan")


def _min(values: pd.Series | Sequence[float]) -> float:
    arr = np.asarray(values, dtype=float)
    return float(arr.min()) if arr.size else float("nan")


def _perturbed(df: pd.DataFrame, attack: str | None) -> pd.DataFrame:
    if attack is not None:
        return df[df["perturbation"] == attack]
    return df[~df["perturbation"].isin(NOT_PERTURBATIONS)]


def _single(df: pd.DataFrame) -> pd.DataFrame:
    return df[~df["target"].str.contains("+", regex=False) & (df["target"] != "none")]


def _clean(df: pd.DataFrame) -> float:
    return _mean(df.loc[df["perturbation"] == "clean", "accuracy"])


def _auc_one(df: pd.DataFrame, attack: str, target: str) -> float:
    """Normalised trapezoid area under (0, clean), (ε, min accuracy at ε)... for one attack/target."""
    sub = df[(df["perturbation"] == attack) & (df["target"] == target) & (df["eps"] > 0)]
    clean = _clean(df)
    if sub.empty or np.isnan(clean):
        return float("nan")
    worst = sub.groupby("eps", sort=True)["accuracy"].agg(_min)
    xs = np.concatenate([[0.0], worst.index.to_numpy(float)])
    ys = np.concatenate([[clean], worst.to_numpy(float)])
    return float(np.trapezoid(ys, xs) / xs[-1])


# --------------------------------------------------------------------------- grid needs


def _perturbation_cells(cells: Sequence[Cell], attack: str | None) -> list[Cell]:
    return [c for c in cells if (c.attack == attack if attack else c.attack not in NOT_PERTURBATIONS)]


def _has_clean(cells: Sequence[Cell]) -> bool:
    return any(c.attack == "clean" for c in cells)


def _needs_clean(cells: Sequence[Cell]) -> Need:
    return None if _has_clean(cells) else Lack("a clean cell", "clean")


def _needs_perturbation(cells: Sequence[Cell], attack: str | None = None) -> Need:
    if _perturbation_cells(cells, attack):
        return None
    return Lack(f"{attack} cells" if attack else "perturbation cells", attack or "an attack")


def _needs_single(cells: Sequence[Cell], attack: str | None = None) -> Need:
    if any(len(c.targets) == 1 for c in _perturbation_cells(cells, attack)):
        return None
    return Lack(f"{attack or 'perturbation'} cells on single modalities", attack or "an attack with targets: each")


def _needs_curve(cells: Sequence[Cell], attack: str, target: str | None = None) -> Need:
    have = sorted({c.target for c in _perturbation_cells(cells, attack)})
    if target is None and not have:
        return Lack(f"{attack} cells", attack)
    if target is not None and target not in have:
        has = f"the grid has {attack} only on {', '.join(have)}" if have else "the grid has none"
        return Lack(f"{attack} cells on {target}", f"{attack} on {target}", has)
    return _needs_clean(cells)


def _needs_single_curve(cells: Sequence[Cell], attack: str) -> Need:
    return _needs_single(cells, attack) or _needs_clean(cells)


def _needs_missing(cells: Sequence[Cell], modality: str | None = None, reduce: str = "min") -> Need:
    ok = [c for c in cells if c.attack == "missing" and (modality is None or c.target == modality)]
    if ok:
        return None
    if modality is None:
        return Lack("missing-modality cells", "missing (targets: each)")
    return Lack(f"a missing cell for {modality}", f"missing on {modality}")


# --------------------------------------------------------------------------- the objectives


@objective("clean_accuracy", label="clean accuracy", needs=_needs_clean)
def clean_accuracy(rows: pd.DataFrame) -> float:
    """Accuracy on unperturbed inputs with every modality present."""
    return _clean(rows)


@objective("mean_robust_accuracy", label="mean robust accuracy", needs=_needs_perturbation)
def mean_robust_accuracy(rows: pd.DataFrame, *, attack: str | None = None) -> float:
    """Mean accuracy over all perturbation cells (or only those of `attack`)."""
    return _mean(_perturbed(rows, attack)["accuracy"])


@objective("worst_modality_accuracy", label="worst-modality accuracy", needs=_needs_single)
def worst_modality_accuracy(rows: pd.DataFrame, *, attack: str | None = None) -> float:
    """Minimum over single modalities of the mean accuracy of their perturbation cells."""
    sub = _single(_perturbed(rows, attack))
    return _min([_mean(s) for _, s in sub.groupby("target", sort=True)["accuracy"]])


@objective("auc", label="AUC", needs=_needs_curve, eps_attack=True)
def auc(rows: pd.DataFrame, *, attack: str, target: str | None = None) -> float:
    """Normalised area under accuracy-vs-eps from (0, clean); target=None: mean over targets."""
    if target is not None:
        return _auc_one(rows, attack, target)
    targets = list(dict.fromkeys(rows.loc[rows["perturbation"] == attack, "target"]))
    return _mean([_auc_one(rows, attack, t) for t in targets])


@objective("worst_modality_auc", label="worst-modality AUC", needs=_needs_single_curve, eps_attack=True)
def worst_modality_auc(rows: pd.DataFrame, *, attack: str) -> float:
    """Minimum over single modalities of auc(attack, modality): the attacker picks the weaker one."""
    targets = list(dict.fromkeys(_single(rows[rows["perturbation"] == attack])["target"]))
    return _min([_auc_one(rows, attack, t) for t in targets])


@objective("missing_modality_accuracy", label="missing-modality accuracy", needs=_needs_missing)
def missing_modality_accuracy(rows: pd.DataFrame, *, modality: str | None = None, reduce: str = "min") -> float:
    """Accuracy with `modality` missing; without one, the min (or mean) over missing-modality cells."""
    sub = rows[rows["perturbation"] == "missing"]
    if modality is not None:
        return _mean(sub.loc[sub["target"] == modality, "accuracy"])
    per_cell = [_mean(s) for _, s in sub.groupby("target", sort=True)["accuracy"]]
    return _min(per_cell) if reduce == "min" else _mean(per_cell)


def _needs_certified(cells: Sequence[Cell], radius: float | None = None, target: str | None = None) -> Need:
    have = [c for c in cells if c.attack == "certified"]
    if not have:
        return Lack("certified cells (a certifying model: jt, ojt, crmt-*)", "certified (or use grid crmt)")
    if target is not None and target not in {c.target for c in have}:
        return Lack(f"certified cells on {target}", f"certified on {target}", "the grid certifies other targets")
    if radius is not None and not any(np.isclose(c.param("eps"), radius) for c in have):
        radii = ", ".join(sorted({f"{c.param('eps'):g}" for c in have}))
        return Lack(
            f"a certified cell at radius {radius:g}", f"certified with eps: {radius:g}", f"the grid has radii {radii}"
        )
    return None


def _statistic(rows: pd.DataFrame, perturbation: str, target: str | None) -> float:
    sub = rows[rows["perturbation"] == perturbation]
    if target is not None:
        sub = sub[sub["target"] == target]
    return _min(sub["value"])


@objective("certified_accuracy", label="certified accuracy", needs=_needs_certified, eps_attack=True)
def certified_accuracy(rows: pd.DataFrame, *, radius: float, target: str | None = None) -> float:
    """Share of samples correct and certified at L2 `radius` on `target` (None: min over targets)."""
    sub = rows[(rows["perturbation"] == "certified") & np.isclose(rows["eps"].astype(float), radius)]
    if target is not None:
        sub = sub[sub["target"] == target]
    return _min(sub["accuracy"])


@objective("mean_certified_radius", label="mean certified radius", needs=_needs_certified)
def mean_certified_radius(rows: pd.DataFrame, *, target: str | None = None) -> float:
    """Mean certified L2 radius over test samples (0 if misclassified); None: min over targets."""
    return _statistic(rows, "certified_radius", target)


@objective("vulnerability_ratio", label="vulnerability ratio", needs=_needs_certified, mode="min")
def vulnerability_ratio(rows: pd.DataFrame) -> float:
    """Largest over smallest mean vulnerability indicator η^(m) = |a_y|τ̃_y + |a_j|τ̃_j (1: balanced)."""
    return _statistic(rows, "vulnerability_ratio", None)


def certificate_metrics(rows: Rows) -> dict[str, float]:
    """Every certificate statistic of a trial's rows as `certificate/<name>[_<target>]` metrics
    (mean over seeds), for the tracker; empty for a model that does not certify."""
    df = _frame(rows, eps=True)
    out: dict[str, float] = {}
    for (pert, target), part in df[df["perturbation"].isin(STATISTICS)].groupby(["perturbation", "target"]):
        key = pert if pert == "vulnerability_ratio" else f"{pert}_{_slug(target)}"
        out[f"certificate/{key}"] = float(np.mean(part.groupby("seed")["value"].mean()))
    return out
