"""The sweep command line, shared by `robustmm sweep SPACE.yaml` and the scripts in sweeps/.

Flags override the search-space file: --smoke applies its smoke: section, then --num-samples,
--max-concurrent, --dataset, --data-dir, --set and the others win over both.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robustmm.config import apply_set
from robustmm.errors import ConfigError, RobustMMError
from robustmm.files import os_error_line
from robustmm.redact import redact


class UsageError(ConfigError):
    """A command line argparse refused (unknown flag, a flag's bad value, a missing argument)."""


class Parser(argparse.ArgumentParser):
    """argparse whose errors are a UsageError (one line, exit 2 through `guarded`) instead of a
    usage block and SystemExit; subcommand parsers inherit it."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


def fail(text: str) -> int:
    """Print `text` as the one error line (secrets redacted, newlines folded) and return exit code 2."""
    line = " ".join(part.strip() for part in redact(str(text)).splitlines() if part.strip())
    print(f"robustmm: error: {line}", file=sys.stderr)
    return 2


def add_sweep_flags(p: argparse.ArgumentParser, subcommand: bool = False) -> None:
    """The flags of a sweep script and of `robustmm sweep SPACE` (one list, so both take the same).

    `subcommand`: `p` is a subcommand of a parser with its own -v, so this -v is only set when
    given after the subcommand: `robustmm -v sweep` and `robustmm sweep -v` both turn it on.
    """
    p.add_argument("--smoke", action="store_true", help="a quick version: the space's smoke: settings")
    p.add_argument("--num-samples", type=int, help="number of trials (budget.num_samples)")
    p.add_argument("--max-concurrent", type=int, help="trials running at once (budget.max_concurrent)")
    p.add_argument("--sampler", help="tpe, nsga2, random, grid or gp (sampler.name)")
    p.add_argument("--sampler-seed", type=int, help="seed of the sampler (sampler.seed)")
    p.add_argument("--dataset", help="dataset name (robustmm list datasets)")
    p.add_argument("--data-dir", help="directory holding the dataset's files (on every node)")
    p.add_argument("--epochs", type=int, help="representation-stage epochs of every trial")
    p.add_argument("--gpu", type=float, help="GPUs per trial, e.g. 0.25 packs four trials on a GPU")
    p.add_argument("--cpu", type=float, help="CPUs per trial")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a run-config key, e.g. train.lr=0.01")
    p.add_argument("--out", help="sweep directory (default runs/<sweep name>)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted sweep in --out")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite in --out)")
    p.add_argument("--storage", help="Ray Tune storage path, shared by all nodes on a cluster (s3://..., NFS)")
    p.add_argument(
        "--address",
        help="Ray cluster to join: host:port, or auto for one started on this machine (default: RAY_ADDRESS, "
        "which ray job submit sets; else a private local Ray of its own)",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS if subcommand else False,
        help="Ray Tune's own progress table and INFO logs",
    )


# flags that set one key of a sweep section
FLAG_KEYS = {
    "num_samples": ("budget", "num_samples"),
    "max_concurrent": ("budget", "max_concurrent"),
    "sampler": ("sampler", "name"),
    "sampler_seed": ("sampler", "seed"),
    "gpu": ("resources", "gpu"),
    "cpu": ("resources", "cpu"),
}


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """The flags as a sweep-YAML fragment."""
    o: dict[str, Any] = {}
    for flag, (section, key) in FLAG_KEYS.items():
        if getattr(args, flag) is not None:
            o.setdefault(section, {})[key] = getattr(args, flag)
    run: dict[str, Any] = {}
    if args.dataset:
        run["dataset"] = {"name": args.dataset}
    if args.data_dir:
        if not Path(args.data_dir).is_dir():
            raise ConfigError(f"--data-dir {args.data_dir!r} is not a directory; point it at the dataset's files")
        run.setdefault("dataset", {})["data_dir"] = str(Path(args.data_dir).resolve())
    if args.epochs is not None:
        run["train"] = {"epochs": args.epochs}
    for assignment in args.set or []:
        apply_set(run, assignment)
    if run:
        o["run"] = run
    return o


def find_space(name: str, script: str | Path | None = None) -> Path:
    """search_spaces/<name>: beside the script's checkout, the installed checkout, or the cwd
    (`ray submit` copies a script alone to the head node; the project is installed there)."""
    import robustmm

    roots = [Path(script).resolve().parent.parent] if script else []
    roots += [Path(robustmm.__file__).resolve().parent.parent, Path.cwd()]
    for root in roots:
        path = root / "search_spaces" / name
        if path.is_file():
            return path
    raise ConfigError(f"search space {name!r} not found under search_spaces/ of {', '.join(map(str, roots))}")


def run_from_args(space: str | Path, args: argparse.Namespace) -> int:
    from robustmm.tracking import FRONT_SEARCH, open_tracking_uri, run_table_url, ui_command
    from robustmm.tune.runner import run_sweep
    from robustmm.tune.space import load_sweep

    spec = load_sweep(space, smoke=args.smoke, overrides=overrides_from(args))
    out = Path(args.out or Path("runs") / spec.name)
    # a server given now (flag, or the environment for a new sweep) is checked before anything
    # starts, and its user:password@ moves to MLflow's environment variables: no file keeps it
    uri = args.tracking_uri or (None if args.resume else os.environ.get("MLFLOW_TRACKING_URI"))
    if uri:
        uri = open_tracking_uri(uri, out)
    result = run_sweep(
        spec,
        out,
        tracking_uri=uri,
        storage=args.storage,
        resume=args.resume,
        verbose=args.verbose,
        address=args.address,
    )
    print(result.front_markdown)
    if result.interrupted:
        print("the sweep was interrupted before every trial ended; continue it: the same command plus --resume")
    print(f"sweep directory: {result.out}")
    print(f"MLflow UI:       {ui_command(result.tracking_uri)}")
    if result.experiment_id:
        table = run_table_url(result.tracking_uri, result.experiment_id)
        print(f"  run table:     {table}")
        print(f"  front's runs:  {run_table_url(result.tracking_uri, result.experiment_id, FRONT_SEARCH)}")
    print(
        f"re-run a trial over seeds: robustmm pick {result.out} --trial N > picked.yaml && "
        "robustmm run --config picked.yaml --seeds 0-9"
    )
    return 130 if result.interrupted else 0


def main(space_name: str, argv: list[str] | None = None, *, script: str | None = None, doc: str = "") -> int:
    """Entry point of a sweeps/ script: `python sweeps/<name>.py [flags]`."""
    # the docstring's example commands are one per line: argparse's default formatter would
    # fill them into one paragraph
    p = Parser(
        prog=Path(script).name if script else None,
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_sweep_flags(p)
    try:
        args = p.parse_args(argv)
    except UsageError as e:
        return fail(str(e))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    return guarded(lambda: run_from_args(find_space(space_name, script), args), "continue the sweep with --resume")


def guarded(call: Callable[[], int], on_interrupt: str) -> int:
    """Run a command: a RobustMMError, or an OSError nobody caught on the way (it names its file),
    is one line on stderr and exit code 2; Ctrl-C says what is kept."""
    try:
        return call()
    except RobustMMError as e:
        return fail(str(e))
    except OSError as e:
        return fail(os_error_line(e))
    except KeyboardInterrupt:
        print(f"robustmm: interrupted; {on_interrupt}", file=sys.stderr)
        return 130
