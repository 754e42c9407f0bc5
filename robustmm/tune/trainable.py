"""The Ray Tune trainable: thin glue from a sampled config to train.py / evaluate.py / tune.report.

One trial = the sweep's run config with the sampled values set, trained and evaluated over its
seeds. Every epoch is reported (stage-prefixed metrics, e.g. `representation/loss`), with a
checkpoint every `checkpoint_every` epochs that holds all the state needed to continue bit for
bit; a retried trial picks up from it. The last report carries the objectives, and its
checkpoint the trial's grid rows (`rows.parquet`). Trials are evaluated on the validation split
only (`SWEEP_SPLIT`): the test split never reaches an objective.

A loss that turns NaN/inf is the trial's own fault, not a crash: retrying would diverge again.
Such a trial reports `trial_status: failed` with the reason and ends; the sweep goes on.
"""

from __future__ import annotations

import functools
import json
import logging
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from ray import tune

from robustmm.attacks import parse_grid
from robustmm.data import load_dataset
from robustmm.data.base import MultimodalDataset
from robustmm.errors import TrainingError
from robustmm.evaluate import evaluate_pipeline
from robustmm.experiment import model_cells
from robustmm.models.base import build_model
from robustmm.objectives import certificate_metrics, compute_objectives
from robustmm.train import Checkpointing, LoopState, resolve_device, seed_everything, train_pipeline
from robustmm.tune.space import SWEEP_SPLIT, SweepSpec

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
ROWS_FILE = "rows.parquet"
NUMBER_KEY = "trial_number"  # the Optuna trial number, added to each trial's config by the searcher


@functools.lru_cache(maxsize=2)
def _dataset(name: str, data_dir: str | None, options_json: str) -> MultimodalDataset:
    return load_dataset(name, data_dir=data_dir, options=json.loads(options_json))


def node_dataset(name: str, data_dir: str | None, options: Mapping[str, Any]) -> MultimodalDataset:
    """The dataset, loaded once per worker process and kept for the trials it runs next.

    Generated data sets (synth-mhd) are written to the node's cache the first time, so each node
    builds them once; later trials only read the files.
    """
    return _dataset(name, data_dir, json.dumps(dict(options), sort_keys=True))


def _stage_metrics(stage: str, metrics: Mapping[str, float]) -> dict[str, float]:
    return {f"{stage}/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


def _save(directory: Path, payload: dict[str, Any], rows: list[dict[str, Any]] | None = None) -> tune.Checkpoint:
    torch.save(payload, directory / STATE_FILE)
    if rows is not None:
        pd.DataFrame(rows).to_parquet(directory / ROWS_FILE, index=False)
    return tune.Checkpoint.from_directory(str(directory))


def _load(checkpoint: tune.Checkpoint | None) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        return torch.load(Path(d) / STATE_FILE, weights_only=True)


class _Reporter:
    """One tune.report per epoch; the epoch's checkpoint, when one is due, goes with it."""

    def __init__(self, seed: int, index: int, rows: list, timing: dict) -> None:
        self.seed, self.index, self.rows, self.timing = seed, index, rows, timing
        self.pending: LoopState | None = None

    def keep(self, state: LoopState) -> None:
        self.pending = state

    def on_epoch(self, stage: str, epoch: int, metrics: dict[str, float]) -> None:
        report = {**_stage_metrics(stage, metrics), "stage": stage, "epoch": epoch, "seed": self.seed}
        report["trial_status"] = "running"
        loop, self.pending = self.pending, None
        if loop is None:
            tune.report(report)
            return
        payload = {
            "seed_index": self.index,
            "rows": self.rows,
            "loop": loop.to_dict(),
            "timing": self.timing,
            "done": False,
        }
        with tempfile.TemporaryDirectory() as d:
            tune.report(report, checkpoint=_save(Path(d), payload))


def train_trial(config: dict[str, Any], spec: SweepSpec) -> None:
    """Run one trial; `spec` reaches the workers once, through tune.with_parameters."""
    values = {k: v for k, v in config.items() if k != NUMBER_KEY}
    cfg = spec.run_config(values)
    device = resolve_device(cfg.device)
    dataset = node_dataset(cfg.dataset, cfg.data_dir, cfg.dataset_options).to(device)
    cells = model_cells(cfg.model, parse_grid(cfg.eval.grid, dataset.modality_names))
    state = _load(tune.get_checkpoint())
    rows: list[dict[str, Any]] = list(state["rows"]) if state else []
    start_seed = int(state["seed_index"]) if state else 0
    timing = dict(state["timing"]) if state else {"train_seconds": 0.0, "eval_seconds": 0.0}
    if state and state.get("done"):
        return  # the final report was already made and checkpointed before the retry

    for index in range(start_seed, len(cfg.seeds)):
        seed = cfg.seeds[index]
        seed_everything(seed)
        model = build_model(cfg.model, dataset.modalities, cfg.model_options, num_classes=dataset.num_classes).to(
            device
        )
        reporter = _Reporter(seed, index, rows, timing)
        resume = None
        if state and index == start_seed and state.get("loop") is not None:
            resume = LoopState.from_dict(state["loop"])
        checkpointing = Checkpointing(spec.checkpoint_every, reporter.keep, resume)
        try:
            pipe = train_pipeline(
                model,
                dataset,
                cfg.train,
                cfg.classifier,
                seed=seed,
                on_epoch=reporter.on_epoch,
                checkpointing=checkpointing,
            )
        except TrainingError as e:
            log.warning("trial failed: %s", e)
            tune.report({"trial_status": "failed", "failure_reason": str(e), "seed": seed})
            return
        timing["train_seconds"] += pipe.seconds
        t0 = time.perf_counter()
        rows += evaluate_pipeline(
            pipe.model,
            pipe.classifier,
            dataset,
            cells,
            seed=seed,
            batch_size=cfg.eval.batch_size,
            max_samples=cfg.eval.max_samples,
            batched=cfg.eval.batched,
            labels={"model": cfg.model, "dataset": cfg.dataset},
            split=SWEEP_SPLIT,
        )
        timing["eval_seconds"] += time.perf_counter() - t0
        state = None

    objectives = compute_objectives(spec.objectives, pd.DataFrame(rows))
    final = {**objectives, **certificate_metrics(rows), **timing, "trial_status": "complete", "device": str(device)}
    final["split"] = SWEEP_SPLIT
    payload = {"seed_index": len(cfg.seeds), "rows": rows, "loop": None, "timing": timing, "done": True}
    with tempfile.TemporaryDirectory() as d:
        tune.report(final, checkpoint=_save(Path(d), payload, rows))


def read_rows(checkpoint: tune.Checkpoint) -> pd.DataFrame | None:
    """The grid rows a finished trial left in its final checkpoint (None if it has none)."""
    with checkpoint.as_directory() as d:
        path = Path(d) / ROWS_FILE
        return pd.read_parquet(path) if path.is_file() else None
