"""The Ray Tune trainable: the run loop (`experiment.run_seed`) plus checkpoints and tune.report.

One trial = the sweep's run config with the sampled values set (scored on the validation split
only, `SWEEP_SPLIT`), run over its seeds. Every epoch is reported (stage-prefixed metrics, e.g.
`representation/loss`), with the checkpoint the run loop takes every `checkpoint_every` epochs;
a retried trial continues from it bit for bit. The last report carries the objectives, and its
checkpoint the trial's grid rows (`rows.parquet`). A loss that turns NaN/inf is the trial's own
fault, not a crash: it reports `trial_status: failed` with the reason and ends.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import tempfile
from typing import Any

import pandas as pd
from ray import tune

from robustmm.data import load_dataset
from robustmm.data.base import MultimodalDataset
from robustmm.errors import TrainingError
from robustmm.experiment import prepare, run_seed
from robustmm.objectives import certificate_metrics, compute_objectives
from robustmm.train import Checkpointing, LoopState, Reporter
from robustmm.tune import trial_checkpoint
from robustmm.tune.space import SWEEP_SPLIT, SweepSpec

log = logging.getLogger(__name__)

NUMBER_KEY = "trial_number"  # the Optuna trial number, added to each trial's config by the searcher


@functools.lru_cache(maxsize=2)
def node_dataset(name: str, data_dir: str | None, options_json: str) -> MultimodalDataset:
    """The dataset, loaded once per worker process for the trials it runs (a generated one is
    written to the node's cache the first time, so each node builds it once)."""
    return load_dataset(name, data_dir=data_dir, options=json.loads(options_json))


def _report(metrics: dict[str, Any], payload: dict[str, Any] | None = None, rows: list | None = None) -> None:
    """tune.report(metrics), with a checkpoint of `payload` (and `rows`) when given."""
    if payload is None:
        tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as d:
        trial_checkpoint.write(d, payload, rows)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


class _TrialReporter(Reporter):
    """One tune.report per epoch; a checkpoint state rides with its epoch's report."""

    def __init__(self, index: int, rows: list, timing: dict) -> None:
        self.index, self.rows, self.timing = index, rows, timing
        self.stage_epochs: dict[str, int] = {}

    def on_stage(self, seed: int, stage: str, total: int) -> None:
        self.stage_epochs[stage] = total

    def on_epoch(self, seed: int, stage: str, epoch: int, metrics: dict[str, float], state: LoopState | None) -> None:
        out = {f"{stage}/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        out.update(stage=stage, epoch=epoch, seed=seed, trial_status="running")
        if stage in self.stage_epochs:
            out["stage_epochs"] = self.stage_epochs[stage]  # for the progress line: epoch 3/5
        loop = state.to_dict() if state is not None else None
        payload = {"seed_index": self.index, "rows": self.rows, "loop": loop, "timing": self.timing, "done": False}
        _report(out, payload if state is not None else None)


def train_trial(config: dict[str, Any], spec: SweepSpec) -> None:
    """Run one trial; `spec` reaches the workers once, through tune.with_parameters."""
    cfg = spec.run_config({k: v for k, v in config.items() if k != NUMBER_KEY})
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, split=SWEEP_SPLIT))  # never test
    data = node_dataset(cfg.dataset, cfg.data_dir, json.dumps(dict(cfg.dataset_options), sort_keys=True))
    prep = prepare(cfg, dataset=data)
    state = trial_checkpoint.load(tune.get_checkpoint())
    if state and state.get("done"):
        return  # the final report was already made and checkpointed before the retry
    rows: list[dict[str, Any]] = list(state["rows"]) if state else []
    timing = dict(state["timing"]) if state else {"train_seconds": 0.0, "eval_seconds": 0.0}
    first = int(state["seed_index"]) if state else 0
    for index in range(first, len(cfg.seeds)):
        resume = LoopState.from_dict(state["loop"]) if state and index == first and state.get("loop") else None
        try:
            reporter = _TrialReporter(index, rows, timing)
            ckpt = Checkpointing(spec.checkpoint_every, resume=resume)
            new, info = run_seed(prep, cfg.seeds[index], reporter, checkpointing=ckpt)
        except TrainingError as e:
            log.warning("trial failed: %s", e)
            _report({"trial_status": "failed", "failure_reason": str(e), "seed": cfg.seeds[index]})
            return
        rows += new
        timing["train_seconds"] += info["train_seconds"]
        timing["eval_seconds"] += info["eval_seconds"]
    final = {**compute_objectives(spec.objectives, pd.DataFrame(rows)), **certificate_metrics(rows), **timing}
    final.update(trial_status="complete", device=str(prep.device), split=cfg.eval.split)
    _report(final, {"seed_index": len(cfg.seeds), "rows": rows, "loop": None, "timing": timing, "done": True}, rows)
