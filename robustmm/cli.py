"""`robustmm list|run|report|sweep|pareto|pick`: a thin front end over the library.

Every RobustMMError, a bad command line and any OSError that reaches this boundary (it names its
file) become one line on stderr, secrets redacted, and exit code 2, before anything is trained.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from robustmm.config import SPLITS
from robustmm.errors import ConfigError

log = logging.getLogger("robustmm")


def _quiet() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") or not sys.stderr.isatty()


class ConsoleReporter:
    """The run loop's reporter (robustmm.train.Reporter, and a report's `on_run`) for a console:
    progress on stderr, tqdm bars in a terminal, one line per epoch / attack group otherwise."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.quiet = _quiet()
        self.started = time.perf_counter()

    def say(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.started:7.1f}s] {text}", file=sys.stderr, flush=True)

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_stage(self, seed: int, stage: str, total: int) -> None:
        self._close()
        if self.quiet:
            self.say(f"seed {seed}: training {stage} ({total} epochs)")
        else:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=f"seed {seed} {stage}", unit="epoch", file=sys.stderr)

    def on_epoch(self, seed: int, stage: str, epoch: int, metrics: dict[str, float], state: Any = None) -> None:
        shown = {k: v for k, v in metrics.items() if k in ("loss", "train_accuracy", "contrastive", "recon")}
        text = " ".join(f"{k}={v:.4g}" for k, v in shown.items())
        if self.bar is not None:
            self.bar.set_postfix_str(text)
            self.bar.update(1)
        else:
            self.say(f"seed {seed} {stage} epoch {epoch}: {text} ({metrics['epoch_seconds']:.1f}s)")

    def on_eval(self, seed: int, description: str, done: int, total: int) -> None:
        if self.quiet:
            self.say(f"seed {seed} evaluating [{done}/{total}] {description}")
            return
        if self.bar is None or self.bar.total != total or not str(self.bar.desc).endswith("grid"):
            self._close()
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=f"seed {seed} grid", unit="group", file=sys.stderr)
        self.bar.set_postfix_str(description)
        self.bar.n = done
        self.bar.refresh()

    def on_run(self, index: int, total: int, model: str, seed: int, status: str) -> None:
        self._close()
        self.say(f"model {index}/{total} {model}, seed {seed}: {status}")

    def on_seed_done(self, seed: int, rows: list[dict[str, Any]]) -> None:
        self._close()
        clean = [r["accuracy"] for r in rows if r["perturbation"] == "clean"]
        self.say(f"seed {seed} done: clean accuracy {100 * clean[0]:.2f} %" if clean else f"seed {seed} done")


def cmd_list(args: argparse.Namespace) -> int:
    from robustmm.attacks import ATTACKS, GRIDS
    from robustmm.data import DATASETS
    from robustmm.models import MODELS

    if args.what == "models":
        for name, entry in MODELS.items():
            print(f"{name:10s} {entry.summary}")
    elif args.what == "datasets":
        for name, entry in DATASETS.items():
            need = " (needs --data-dir)" if entry.needs_data_dir else ""
            print(f"{name:12s} {entry.summary}{need}")
            print(f"{'':12s} options: " + ", ".join(f"{k}={v!r}" for k, v in entry.defaults.items()))
    elif args.what == "attacks":
        for name, entry in ATTACKS.items():
            print(f"{name:10s} {entry.summary}")
    else:
        for name in GRIDS.names():
            cells = GRIDS.get(name)(("image", "trajectory"))
            doc = (GRIDS.get(name).__doc__ or "").strip().splitlines()
            print(f"{name:8s} {len(cells):3d} cells on image+trajectory  {doc[0] if doc else ''}")
    return 0


def _file_and_flags(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The --config file and the flags as run-config mappings, not yet merged (`run` and `report` share them)."""
    from robustmm import config as C

    raw: dict[str, Any] = C.load_yaml(args.config) if args.config else {}
    flags: dict[str, Any] = {}
    if getattr(args, "model", None):
        flags["model"] = {"name": args.model}
    if args.dataset:
        flags["dataset"] = {"name": args.dataset}
    if args.data_dir:
        if not Path(args.data_dir).is_dir():
            raise ConfigError(f"--data-dir {args.data_dir!r} is not a directory; point it at the dataset's files")
        flags.setdefault("dataset", {})["data_dir"] = args.data_dir
    if args.grid:
        flags.setdefault("eval", {})["grid"] = args.grid
    if getattr(args, "max_samples", None) is not None:
        flags.setdefault("eval", {})["max_samples"] = args.max_samples
    if getattr(args, "split", None):
        flags.setdefault("eval", {})["split"] = args.split
    if args.seeds is not None:
        flags["seeds"] = args.seeds
    if args.epochs is not None:
        flags["train"] = {"epochs": args.epochs}
    if args.classifier_epochs is not None:
        flags["classifier"] = {"epochs": args.classifier_epochs}
    if args.device:
        flags["device"] = args.device
    return raw, flags


def build_config(args: argparse.Namespace):
    from robustmm import config as C

    raw, flags = _file_and_flags(args)
    if "model" in flags and isinstance(raw.get("model"), dict) and raw["model"].get("name") not in (None, args.model):
        raw["model"] = {}  # another model's options do not carry over
    raw = C.merge(raw, flags)
    for assignment in args.set or []:
        C.apply_set(raw, assignment)
    return C.from_dict(raw)


def _sizes(data: Any) -> str:
    return f"{len(data.train)} train / {len(data.validation)} validation / {len(data.test)} test"


def cmd_run(args: argparse.Namespace) -> int:
    from robustmm import experiment

    cfg = build_config(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} exists and is not a directory")
    hooks = ConsoleReporter()
    hooks.say(f"loading {cfg.dataset} and checking the config")
    prep = experiment.prepare(cfg)
    hooks.say(
        f"{cfg.model} on {cfg.dataset} ({_sizes(prep.dataset)}, modalities {', '.join(prep.dataset.modality_names)}), "
        f"evaluated on {cfg.eval.split}, {len(prep.cells)} grid cells, seeds {', '.join(map(str, cfg.seeds))}, "
        f"device {prep.device}"
    )
    experiment.run(cfg, out, hooks, prep)
    print((out / "summary.md").read_text())
    hooks.say(f"wrote {out / 'results.parquet'} and {out / 'summary.md'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from robustmm import config as C
    from robustmm import report as R

    raw, flags = _file_and_flags(args)
    plan = R.plan_report(C.merge(raw, flags), args.models, args.set or [], args.out, args.command_line)
    hooks = ConsoleReporter()
    for note in plan.notes:
        hooks.say(note)
    first = plan.runs[0].config
    hooks.say(f"loading {first.dataset} and checking {len(plan.runs)} model config(s)")
    preps = R.prepare_report(plan)
    if not args.no_baselines:
        plan, preps = R.add_baselines(plan, preps)
    data = preps[0].dataset
    baselines = sum(r.baseline for r in plan.runs)
    hooks.say(
        f"{len(plan.runs) - baselines} model(s) + {baselines} raw-input baseline(s) × {len(plan.seeds)} seed(s) "
        f"on {first.dataset} ({_sizes(data)}), evaluated on "
        f"{first.eval.split}, {len(preps[0].cells)} grid cells, device {preps[0].device}; "
        f"finished (model, seed) results are kept in {plan.out / 'runs'} and reused"
    )
    df, trained, reused = R.run_report(plan, preps, hooks)
    files = R.write_report(plan, df, trained, reused)
    print(files.report.read_text())
    hooks.say(f"trained {trained}, reused {reused} (model, seed) result(s)")
    hooks.say(
        f"wrote {files.report}, {files.results.name}, {files.summary.name}, "
        f"{len(files.tables)} table(s) in {files.out / 'tables'}, {len(files.plots)} plot(s) in {files.out / 'plots'}"
    )
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from robustmm.tune.command import run_from_args

    if not Path(args.space).exists():
        raise ConfigError(f"search space {args.space!r} does not exist; see search_spaces/ for examples")
    return run_from_args(args.space, args)


def cmd_pareto(args: argparse.Namespace) -> int:
    from robustmm import pareto
    from robustmm.tune.runner import load_sweep_dir, objective_triples

    spec, trials = load_sweep_dir(args.dir)
    objectives = objective_triples(spec)
    if args.all:
        from robustmm.pareto.table import trials_text

        print(trials_text(trials, objectives), end="")
    else:
        print(pareto.front_markdown(trials, objectives, title=f"Pareto front of {spec.name}"))
    return 0


def cmd_pick(args: argparse.Namespace) -> int:
    import yaml

    from robustmm.tune.runner import picked_config

    text = yaml.safe_dump(picked_config(args.dir, args.trial), sort_keys=False)
    header = (
        f"# trial {args.trial} of the sweep in {args.dir} (chosen on validation; this config evaluates on test);\n"
        "# re-run with: robustmm run --config FILE --seeds 0-9\n"
    )
    if args.out:
        from robustmm.results import write_text

        write_text(args.out, header + text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(header + text, end="")
    return 0


def parser() -> argparse.ArgumentParser:
    from robustmm.tune.command import Parser

    p = Parser(prog="robustmm", description="Robustness sweeps for multimodal representation models.")
    p.add_argument("-v", "--verbose", action="store_true", help="log every training epoch at INFO level")
    sub = p.add_subparsers(dest="command", required=True)
    lp = sub.add_parser("list", help="list registered models, datasets, attacks or grids")
    lp.add_argument("what", choices=["models", "datasets", "attacks", "grids"])
    lp.set_defaults(func=cmd_list)
    rp = sub.add_parser("run", help="train a model over seeds and evaluate it on a perturbation grid")
    rp.add_argument("--config", help="run config YAML (see README); flags and --set override it")
    rp.add_argument("--model", help="model name (robustmm list models); default gmcwd")
    rp.add_argument("--dataset", help="dataset name (robustmm list datasets); default synth-mhd")
    rp.add_argument("--data-dir", help="directory holding the dataset's files")
    rp.add_argument("--grid", help="perturbation grid name (robustmm list grids); default smoke")
    rp.add_argument("--seeds", help="seeds, e.g. 0-2 or 0,3,5; default 0")
    rp.add_argument("--epochs", type=int, help="representation-stage epochs")
    rp.add_argument("--classifier-epochs", type=int, help="classifier epochs")
    rp.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    rp.add_argument("--split", choices=SPLITS, help="evaluate on this split (eval.split); default test")
    rp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any config key, e.g. model.tau=0.2")
    rp.add_argument("--out", default="runs/latest", help="output directory (default runs/latest)")
    rp.set_defaults(func=cmd_run)
    ep = sub.add_parser("report", help="the thesis protocol: every model × seed on a grid, tables and plots")
    ep.add_argument("--models", default="all", help="'all' (default: every registered model) or names, e.g. gmc,gmcwd")
    ep.add_argument("--dataset", help="dataset name (robustmm list datasets); default synth-mhd")
    ep.add_argument("--data-dir", help="directory holding the dataset's files")
    ep.add_argument("--grid", help="perturbation grid name (robustmm list grids); default thesis")
    ep.add_argument("--seeds", help="seeds, e.g. 0-9 or 0,3,5; default 0-9")
    ep.add_argument("--epochs", type=int, help="representation-stage epochs")
    ep.add_argument("--classifier-epochs", type=int, help="classifier epochs")
    ep.add_argument("--max-samples", type=int, help="evaluate on the first N samples of the split (eval.max_samples)")
    ep.add_argument("--split", choices=SPLITS, help="evaluate on this split (eval.split); default test")
    ep.add_argument("--config", help="run config YAML; its model options go to the models that have them")
    ep.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config key; model.KEY=V goes to each selected model with option KEY",
    )
    ep.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    ep.add_argument("--out", default="runs/report", help="output directory (default runs/report)")
    ep.add_argument(
        "--no-baselines",
        action="store_true",
        help="leave out the raw-input baselines (linear probe per modality and on all, MLP on all)",
    )
    ep.set_defaults(func=cmd_report)
    from robustmm.tune.command import add_sweep_flags

    sp = sub.add_parser("sweep", help="search a space (search_spaces/*.yaml) with Ray Tune + Optuna, track in MLflow")
    sp.add_argument("space", help="search-space YAML, e.g. search_spaces/gmcwd_weights.yaml")
    add_sweep_flags(sp, subcommand=True)
    sp.set_defaults(func=cmd_sweep)
    pp = sub.add_parser("pareto", help="print the Pareto front of a finished sweep")
    pp.add_argument("dir", help="the sweep directory (its --out)")
    pp.add_argument("--all", action="store_true", help="every trial with its status and Pareto rank")
    pp.set_defaults(func=cmd_pareto)
    kp = sub.add_parser("pick", help="write the run config of one trial, for robustmm run --config")
    kp.add_argument("dir", help="the sweep directory (its --out)")
    kp.add_argument("--trial", type=int, required=True, help="trial number (robustmm pareto DIR lists them)")
    kp.add_argument("--out", help="write to this file instead of stdout")
    kp.set_defaults(func=cmd_pick)
    return p


def main(argv: list[str] | None = None) -> int:
    from robustmm.redact import redact
    from robustmm.tune.command import UsageError, fail, guarded

    try:
        args = parser().parse_args(argv)
    except UsageError as e:
        return fail(str(e))
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    args.command_line = redact(shlex.join(["robustmm", *(sys.argv[1:] if argv is None else argv)]))
    kept = {
        "sweep": "continue a sweep with --resume",
        "report": "finished (model, seed) results are kept; the same command reuses them",
    }.get(args.command, "results of finished seeds are kept")
    return guarded(lambda: args.func(args), kept)


if __name__ == "__main__":
    sys.exit(main())
