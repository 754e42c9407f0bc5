"""The thesis protocol in one call: every selected model × every seed, trained once, then tables and plots.

A report is many `experiment.run_seed` calls on one dataset. What makes it more than a loop:

- The data are loaded once (`prepare_report`): each model gets its own `experiment.Prepared`
  sharing the loaded dataset, the grid cells and the device.
- Each (model, seed) result is cached under `OUT/runs/<model>/<key>/seed_<s>.parquet`, `key`
  being a hash of that model's resolved config without the seeds (model and dataset options
  filled with their defaults, the device reduced to cpu/cuda). Re-running the command reuses
  every finished pair, a killed report loses at most the pair in flight, and a changed config
  (other epochs, other options) lands under another key instead of mixing with old numbers.
- `--set model.KEY=V` goes to each selected model that has option KEY (GMCWD's `noise_sigma`
  means nothing to GMC); it is an error only when none has it, so a typo still fails up front.
- Raw-input baselines (`add_baselines`, on unless turned off) sit beside the models: the `raw`
  model as a linear probe on each modality and on all of them, and a small MLP on all of them,
  with the report's data, grid, seeds and classifier budget, so every table shows whether a
  representation beats the raw features, clean and under attack.

Everything that can be wrong is found in `plan_report` and `prepare_report`, before anything is
written or trained. No ray, optuna or mlflow here: a report runs wherever `robustmm run` does.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from robustmm import config as C
from robustmm.attacks import parse_grid
from robustmm.config import RunConfig
from robustmm.data.base import dataset_options
from robustmm.device import resolve_device
from robustmm.errors import ConfigError
from robustmm.evaluate import model_cells
from robustmm.experiment import Prepared, prepare, run_seed
from robustmm.models import MODELS
from robustmm.models.base import build_model, make_options, model_defaults
from robustmm.registry import did_you_mean
from robustmm.results import (
    ATTACK_ORDER,
    TITLES,
    SummaryTable,
    base_label,
    model_order,
    read_parquet,
    summarise,
    summary_markdown,
    summary_tables,
    to_frame,
    write_atomic,
    write_parquet,
    write_text,
)
from robustmm.train import Reporter

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {"seeds": "0-9", "eval": {"grid": "thesis"}}
"""The report's own defaults (the thesis protocol); a --config file and the flags override them."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]")


class ReportReporter(Reporter):
    """The run loop's `Reporter` plus what a report adds: which (model, seed) comes next and whether it trains."""

    def on_run(self, index: int, total: int, model: str, seed: int, status: str) -> None: ...


@dataclass(frozen=True)
class ModelRun:
    """One model's config in a report; its seeds' results live in `OUT/runs/<model>/<key>/`."""

    model: str
    config: RunConfig
    key: str
    resolved: Mapping[str, Any]
    assignments: tuple[str, ...] = ()  # the model-option settings that reached this model
    baseline: bool = False  # a raw-input baseline (`add_baselines`): `model` is its label, not a registry name


@dataclass(frozen=True)
class ReportPlan:
    out: Path
    runs: tuple[ModelRun, ...]
    seeds: tuple[int, ...]
    command: str = ""
    notes: tuple[str, ...] = ()  # which model-option settings went where, for the progress output

    def run_dir(self, run: ModelRun) -> Path:
        return self.out / "runs" / run.model / run.key

    def seed_path(self, run: ModelRun, seed: int) -> Path:
        return self.run_dir(run) / f"seed_{seed}.parquet"


@dataclass(frozen=True)
class ReportFiles:
    out: Path
    results: Path
    summary: Path
    report: Path
    tables: tuple[Path, ...]
    plots: tuple[Path, ...]
    trained: int = 0
    reused: int = 0


THESIS_ORDER = ("dae", "vae", "mdae", "mvae", "cmdae", "cmvae", "cmdvae", "gmc", "gmcwd", "dgmc", "rgmc")
"""Seed 000's order of its models (its Tables 5.1-5.5); `all` lists models in it, then seed 001's."""
CRMT_ORDER = ("jt", "ojt", "crmt-jt", "crmt-at", "crmt-mix")
BASELINE_MODEL = "raw"
"""The raw-input probe: not a representation, so `all` leaves it to `add_baselines`."""
BASELINE_MLP_HIDDEN = (128,)


def select_models(spec: str | Sequence[str]) -> list[str]:
    """'all' -> every registered model, in the thesis' order (then any others by name); 'a,b' or
    ['a', 'b'] -> those, in that order, each checked against the registry."""
    if isinstance(spec, str):
        if spec.strip() == "all":
            known = [m for m in (*THESIS_ORDER, *CRMT_ORDER) if m in MODELS]
            return known + [m for m in MODELS.names() if m not in (*known, BASELINE_MODEL)]
        spec = spec.split(",")
    names = [s.strip() for s in spec]
    if not names or any(not n for n in names):
        raise ConfigError(f"--models {','.join(spec)!r} has an empty name; give 'all' or names like gmc,gmcwd")
    for n in names:
        MODELS.get(n)  # the registry's "did you mean" error
    if len(set(names)) != len(names):
        raise ConfigError(f"--models {','.join(names)!r} names a model twice")
    return names


def _model_key(assignment: str) -> str | None:
    """The model option a `model.KEY[.sub]=V` assignment sets, or None for any other section."""
    key, sep, _ = assignment.partition("=")
    if not sep:
        C.apply_set({}, assignment)  # raises the usual "must look like section.key=value"
    parts = key.strip().split(".")
    if parts[0] != "model":
        return None
    if len(parts) < 2 or not parts[1]:
        raise ConfigError(f"--set {assignment!r} names no model option; write e.g. model.tau=0.2")
    if parts[1] == "name":
        raise ConfigError(f"--set {assignment!r}: a report picks its models with --models, not model.name")
    return parts[1]


def _no_model_has(what: str, option: str, models: Sequence[str]) -> ConfigError:
    known = sorted({k for m in models for k in model_defaults(m)})
    return ConfigError(
        f"{what}: none of the selected models ({', '.join(models)}) has option {option!r}"
        f"{did_you_mean(option, known)}; their options: {', '.join(known)}"
    )


def resolved_config(cfg: RunConfig) -> dict[str, Any]:
    """The config as it runs, without the seeds: what the cache key hashes. Model and dataset
    options are filled with their defaults (setting an option to its default reuses results; a
    changed default does not), and the device is reduced to cpu/cuda: `auto` and `cpu` on a CPU
    machine give the same numbers, a CPU and a GPU do not."""
    d = cfg.to_dict()
    d.pop("seeds")
    entry = MODELS.get(cfg.model)
    d["model"] = {"name": cfg.model, **dataclasses.asdict(make_options(entry.cls, cfg.model, cfg.model_options))}
    dataset = dataclasses.asdict(dataset_options(cfg.dataset, cfg.dataset_options))
    d["dataset"] = {"name": cfg.dataset, "data_dir": cfg.data_dir, **dataset}
    d["device"] = resolve_device(cfg.device).type
    return d


def config_key(resolved: Mapping[str, Any]) -> str:
    text = json.dumps(resolved, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def plan_report(
    base: Mapping[str, Any],
    models: str | Sequence[str] = "all",
    sets: Sequence[str] = (),
    out: str | Path = "runs/report",
    command: str = "",
) -> ReportPlan:
    """Each selected model's RunConfig from `base` (a run-config mapping: --config file merged with
    the flags) and the --set assignments. Loads no data and writes nothing."""
    names = select_models(models)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} exists and is not a directory")
    raw = C.merge(DEFAULTS, base)
    model_section = raw.pop("model", None) or {}
    if isinstance(model_section, str):
        model_section = {}
    if not isinstance(model_section, Mapping):
        raise ConfigError(f"config section 'model' must be a mapping, got {model_section!r}")
    options = {k: v for k, v in model_section.items() if k != "name"}

    raws = {m: C.merge(raw, {"model": {"name": m}}) for m in names}
    given: dict[str, list[str]] = {m: [] for m in names}
    notes = []
    for option, value in options.items():  # the config file's model options, like --set model.KEY
        having = [m for m in names if option in model_defaults(m)]
        if not having:
            raise _no_model_has(f"config model option {option!r}", option, names)
        for m in having:
            raws[m]["model"][option] = copy.deepcopy(value)  # a later --set may edit one model's copy
            given[m].append(f"{option}={value}")
    for assignment in sets:
        option = _model_key(assignment)
        having = names if option is None else [m for m in names if option in model_defaults(m)]
        if not having:
            raise _no_model_has(f"--set {assignment!r}", option or "", names)
        for m in having:
            C.apply_set(raws[m], assignment)
        if option is not None:
            for m in having:
                given[m].append(assignment.strip().removeprefix("model."))
            if len(having) < len(names):
                skipped = ", ".join(m for m in names if m not in having)
                notes.append(f"--set {assignment} applies to {', '.join(having)} (no such option: {skipped})")

    runs = []
    for m in names:
        cfg = C.from_dict(raws[m])
        resolved = resolved_config(cfg)
        runs.append(ModelRun(m, cfg, config_key(resolved), resolved, tuple(given[m])))
    return ReportPlan(out, tuple(runs), runs[0].config.seeds, command, tuple(notes))


def _shared(prep: Prepared, cfg: RunConfig) -> Prepared:
    """Another model on the same loaded data: only the model section differs between a report's configs."""
    build_model(
        cfg.model, prep.dataset.modalities, cfg.model_options, num_classes=prep.dataset.num_classes
    )  # validates the options
    cells = model_cells(cfg.model, parse_grid(cfg.eval.grid, prep.dataset.modality_names), strict=False)
    return Prepared(cfg, prep.dataset, cells, prep.device)


def prepare_report(plan: ReportPlan) -> list[Prepared]:
    """Load the dataset once and check every model's options and the grid against it; a model
    without a certificate skips the grid's certified cells (the CRMT family is scored on them)."""
    first = prepare(plan.runs[0].config, strict=False)
    return [first, *(_shared(first, r.config) for r in plan.runs[1:])]


def baseline_options(modality_names: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """(label, `raw` options) of each baseline: a linear probe per modality and on all of them,
    then an MLP with one hidden layer on all of them. Labels carry no `[`: they are models of
    their own, not attack variants (`base_label`)."""
    probes = [(f"raw-linear-{m}", {"modalities": [m], "hidden": []}) for m in modality_names]
    return [*probes, ("raw-linear-all", {"hidden": []}), ("raw-mlp-all", {"hidden": list(BASELINE_MLP_HIDDEN)})]


def add_baselines(plan: ReportPlan, preps: Sequence[Prepared]) -> tuple[ReportPlan, list[Prepared]]:
    """The plan and its prepared runs with the raw-input baselines after the models: the first
    model's config with the model replaced by `raw` (same data, split, grid, seeds, classifier
    section); the modalities come from the loaded dataset. A plan that has them already is
    returned as is."""
    if any(r.baseline for r in plan.runs):
        return plan, list(preps)
    base = plan.runs[0].config
    runs, out = list(plan.runs), list(preps)
    for label, options in baseline_options(preps[0].dataset.modality_names):
        # no representation stage: the train section is unused, so another --epochs reuses the baselines
        cfg = dataclasses.replace(base, model=BASELINE_MODEL, model_options=options, train=C.OptimConfig(epochs=0))
        resolved = resolved_config(cfg)
        said = tuple(f"{k}={v}" for k, v in options.items())
        runs.append(ModelRun(label, cfg, config_key(resolved), resolved, said, baseline=True))
        out.append(_shared(preps[0], cfg))
    return dataclasses.replace(plan, runs=tuple(runs)), out


def run_report(
    plan: ReportPlan, preps: Sequence[Prepared], hooks: ReportReporter | None = None
) -> tuple[pd.DataFrame, int, int]:
    """Train and evaluate each (model, seed) not yet in the cache; returns all rows, #trained, #reused."""
    hooks = hooks or ReportReporter()
    frames, trained, reused = [], 0, 0
    for i, (run, prep) in enumerate(zip(plan.runs, preps, strict=True), start=1):
        folder = plan.run_dir(run)
        if not (folder / "config.yaml").is_file():
            header = (
                f"# {run.model} in a robustmm report; key {run.key}. seed_<s>.parquet beside this file hold the\n"
                "# finished seeds; re-run one with: robustmm run --config config.yaml --seeds S\n"
            )
            cfg = run.config.to_dict()
            cfg.pop("seeds")
            write_text(folder / "config.yaml", header + yaml.safe_dump(cfg, sort_keys=False))
        for seed in plan.seeds:
            path = plan.seed_path(run, seed)
            rows = _cached(path)
            if rows is not None:
                hooks.on_run(i, len(plan.runs), run.model, seed, f"reusing {path}")
                reused += 1
            else:
                hooks.on_run(i, len(plan.runs), run.model, seed, "training")
                new, info = run_seed(prep, seed, hooks, label=run.model)
                rows = to_frame(new)
                write_text(path.with_suffix(".json"), json.dumps(info, indent=1))
                write_parquet(rows, path)  # last: its presence marks the seed as done
                trained += 1
            frames.append(rows)
    return pd.concat(frames, ignore_index=True), trained, reused  # each frame is already in the schema


def _cached(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return read_parquet(path)
    except Exception as e:  # writes are atomic, so this is a damaged disk or a foreign file: train again
        log.warning("cannot read %s (%s); training that seed again", path, e)
        return None


# ---------------------------------------------------------------------------------------------- report.md


def _header(plan: ReportPlan, df: pd.DataFrame) -> str:
    cfg = plan.runs[0].config
    opts = ", ".join(f"{k}={v}" for k, v in cfg.dataset_options.items())
    grid = cfg.eval.grid if isinstance(cfg.eval.grid, str) else f"custom ({len(cfg.eval.grid)} entries)"
    n = df["n"].max() if len(df) else 0
    split = cfg.eval.split
    lines = [
        "# Robustness report",
        "",
        f"- split: **{split}**" + (" (hyperparameters are chosen on validation)" if split == "test" else ""),
        f"- dataset: {cfg.dataset}" + (f" ({opts})" if opts else "") + f", {n} {split} samples evaluated per cell",
        f"- models: {', '.join(r.model for r in plan.runs if not r.baseline)}",
        f"- seeds: {', '.join(map(str, plan.seeds))} ({len(plan.seeds)})",
        f"- epochs: {cfg.train.epochs} representation, {cfg.classifier.epochs} classifier",
        f"- grid: {grid}",
        *_baselines_line(plan, cfg),
        f"- command: `{plan.command}`" if plan.command else "- command: (library call)",
        "",
        "| model | results in | model options set |",
        "| --- | --- | --- |",
    ]
    for r in plan.runs:
        where = plan.run_dir(r).relative_to(plan.out)
        lines.append(f"| {r.model} | `{where}/` | {', '.join(r.assignments) or 'defaults'} |")
    return "\n".join(lines)


def _baselines_line(plan: ReportPlan, cfg: RunConfig) -> list[str]:
    labels = [r.model for r in plan.runs if r.baseline]
    if not labels:
        return []
    c = cfg.classifier
    return [f"- baselines (raw inputs, the classifier's budget: {c.epochs} epochs, lr {c.lr:g}): {', '.join(labels)}"]


def report_markdown(plan: ReportPlan, df: pd.DataFrame, tables: list[SummaryTable] | None = None) -> str:
    return _header(plan, df) + "\n\n" + summary_markdown(df, tables)


# ---------------------------------------------------------------------------------------------- plots


def curve(df: pd.DataFrame, attack: str, target: str) -> tuple[str, bool, dict[str, pd.DataFrame]]:
    """Accuracy vs budget for one attack and target: (x parameter, whether some x had several cells,
    per model label a frame x, mean, std). Per seed the worst cell at each x (the thesis' BIM/PGD grids
    have two step sizes per ε: the attacker picks the better one), the clean accuracy at x=0, then
    the mean and the sample std (ddof=1; NaN with one seed: no band) over seeds. An attack variant's x=0
    point is its model's clean accuracy: the variant changes the attack, not the trained model. These
    are per-cell accuracies; the worst case is in the tables (`robustmm.worst_case`)."""
    part = df[(df["perturbation"] == attack) & (df["target"] == target)]
    x = "sigma" if part["eps"].isna().all() else "eps"
    part = part[part[x].notna()]
    if part.empty:
        return x, False, {}
    groups = part.groupby(["model", "seed", x], sort=False)["accuracy"]
    several = bool(groups.size().max() > 1)
    worst = groups.min().reset_index()
    clean = df[df["perturbation"] == "clean"]
    clean_of = {(base_label(m), s): a for m, s, a in zip(clean["model"], clean["seed"], clean["accuracy"], strict=True)}
    out = {}
    for label in model_order(worst["model"]):
        w = worst[worst["model"] == label]
        zero = [
            {"seed": s, x: 0.0, "accuracy": clean_of[(base_label(label), s)]}
            for s in dict.fromkeys(w["seed"])
            if (base_label(label), s) in clean_of
        ]
        pts = pd.concat([pd.DataFrame(zero, columns=["seed", x, "accuracy"]), w[["seed", x, "accuracy"]]])
        g = pts.groupby(x)["accuracy"]
        out[label] = pd.DataFrame(
            {"x": g.mean().index.astype(float), "mean": g.mean().values, "std": g.std(ddof=1).values}
        ).sort_values("x")
    return x, several, out


def plot_curve(df: pd.DataFrame, attack: str, target: str, path: Path) -> Path | None:
    x, several, curves = curve(df, attack, target)
    if not curves:
        return None
    from matplotlib import cm
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # the OO API on the Agg canvas: no pyplot state, no display

    many = len(curves) > 5  # then the legend goes beside the plot, where it hides no line
    fig = Figure(figsize=(8.2 if many else 6.4, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bases = list(dict.fromkeys(base_label(m) for m in curves))
    palette = [f"C{i}" for i in range(10)] if len(bases) <= 10 else [cm.tab20(i % 20) for i in range(len(bases))]
    colours = dict(zip(bases, palette, strict=False))  # a variant shares its model's colour, dashed
    for label, c in curves.items():
        colour = colours[base_label(label)]
        style = "-" if label == base_label(label) else "--"
        ax.plot(c["x"], 100 * c["mean"], style, marker="o", ms=3.5, color=colour, label=label)
        ax.fill_between(c["x"], 100 * (c["mean"] - c["std"]), 100 * (c["mean"] + c["std"]), color=colour, alpha=0.15)
    sym = "σ" if x == "sigma" else "ε"
    seeds = df["seed"].nunique()
    ax.set_xlabel(f"{sym} (0: clean)")
    ylabel = "accuracy (%)"
    if several:
        ylabel += f", worst over the step sizes at each {sym}"
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(f"{TITLES.get(attack, attack)} on {target}: mean ± std over {seeds} seed(s)", fontsize=10)
    ax.set_ylim(0, 102)
    ax.grid(True, lw=0.4, alpha=0.5)
    if many:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0.0)
    else:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))


def plot_curves(df: pd.DataFrame, folder: Path) -> list[Path]:
    """One PNG per (attack, target): `<attack>_<target>.png`."""
    present = set(df["perturbation"]) - {"clean", "missing"}
    attacks = [a for a in ATTACK_ORDER if a in present] + sorted(present - set(ATTACK_ORDER))
    written = []
    for attack in attacks:
        for target in dict.fromkeys(df[df["perturbation"] == attack]["target"]):
            path = plot_curve(df, attack, target, folder / f"{_UNSAFE.sub('-', attack)}_{_UNSAFE.sub('-', target)}.png")
            if path is not None:
                written.append(path)
    return written


# ---------------------------------------------------------------------------------------------- outputs


def _parquet(frame: pd.DataFrame, path: Path) -> Path:
    return write_atomic(path, lambda tmp: frame.to_parquet(tmp, engine="pyarrow", index=False))


def _drop_stale(folder: Path, pattern: str, keep: Sequence[Path]) -> None:
    """A report over other attacks or modalities must not leave an earlier report's tables and plots behind."""
    for p in folder.glob(pattern):
        if p not in keep:
            p.unlink()


def write_report(plan: ReportPlan, df: pd.DataFrame, trained: int = 0, reused: int = 0) -> ReportFiles:
    """results.parquet, summary.parquet, report.md, tables/<section>.parquet and plots/<attack>_<target>.png."""
    out = plan.out
    results = write_parquet(df, out / "results.parquet")
    summary = _parquet(summarise(df), out / "summary.parquet")
    sections = summary_tables(df)
    tables = [_parquet(t.frame(), out / "tables" / f"{_UNSAFE.sub('-', t.key)}.parquet") for t in sections]
    _drop_stale(out / "tables", "*.parquet", tables)
    plots = plot_curves(df, out / "plots")
    _drop_stale(out / "plots", "*.png", plots)
    md = write_text(out / "report.md", report_markdown(plan, df, sections))
    return ReportFiles(out, results, summary, md, tuple(tables), tuple(plots), trained, reused)


def report(
    base: Mapping[str, Any],
    models: str | Sequence[str] = "all",
    sets: Sequence[str] = (),
    out: str | Path = "runs/report",
    hooks: ReportReporter | None = None,
    command: str = "",
    baselines: bool = True,
) -> ReportFiles:
    """plan -> prepare (load the data once) -> add the raw-input baselines -> run or reuse every
    (model, seed) -> write the report."""
    plan = plan_report(base, models, sets, out, command)
    preps = prepare_report(plan)
    if baselines:
        plan, preps = add_baselines(plan, preps)
    df, trained, reused = run_report(plan, preps, hooks)
    return write_report(plan, df, trained, reused)


__all__ = [
    "DEFAULTS",
    "ModelRun",
    "ReportFiles",
    "ReportReporter",
    "ReportPlan",
    "add_baselines",
    "baseline_options",
    "config_key",
    "curve",
    "plan_report",
    "plot_curves",
    "prepare_report",
    "report",
    "report_markdown",
    "resolved_config",
    "run_report",
    "select_models",
    "write_report",
]
