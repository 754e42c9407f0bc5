"""One run config over its seeds: load data once, then per seed train -> freeze -> evaluate.

Everything that can be wrong with the config is found in `prepare` — before any training.
Results are written after every seed (atomically), so an interrupted run keeps what it did.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from robustmm.attacks import Cell, parse_grid
from robustmm.attacks.grid import certificate_cells
from robustmm.config import RunConfig
from robustmm.data import load_dataset
from robustmm.data.base import MultimodalDataset
from robustmm.errors import ConfigError
from robustmm.evaluate import evaluate_pipeline
from robustmm.models.base import MODELS, ReferenceRequest, build_model
from robustmm.results import summary_markdown, to_frame, write_parquet, write_text
from robustmm.train import EpochCallback, reference_epochs, resolve_device, seed_everything, train_pipeline

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    config: RunConfig
    dataset: MultimodalDataset
    cells: list[Cell]
    device: Any


class Hooks:
    """What a front end (CLI progress bars, a Ray trainable) wants to hear about."""

    def on_stage(self, seed: int, stage: str, total: int) -> None: ...
    def on_epoch(self, seed: int, stage: str, epoch: int, metrics: dict[str, float]) -> None: ...
    def on_eval(self, seed: int, description: str, done: int, total: int) -> None: ...
    def on_seed_done(self, seed: int, rows: list[dict[str, Any]]) -> None: ...


def prepare(cfg: RunConfig, *, strict: bool = True) -> Prepared:
    """Load the data and check the model options and the grid against it; trains nothing.
    `strict=False` drops the certified cells for a model without a certificate instead of failing."""
    device = resolve_device(cfg.device)
    dataset = load_dataset(cfg.dataset, data_dir=cfg.data_dir, options=cfg.dataset_options)
    build_model(cfg.model, dataset.modalities, cfg.model_options, num_classes=dataset.num_classes)  # validates
    cells = model_cells(cfg.model, parse_grid(cfg.eval.grid, dataset.modality_names), strict=strict)
    return Prepared(cfg, dataset.to(device), cells, device)


def model_cells(model: str, cells: list[Cell], *, strict: bool = True) -> list[Cell]:
    """The grid cells `model` can be scored on: certified cells need a model that certifies."""
    certified = certificate_cells(cells)
    if not certified or MODELS.get(model).cls.certifies:
        return cells
    if strict:
        able = ", ".join(n for n, e in MODELS.items() if e.cls.certifies)
        raise ConfigError(
            f"model {model!r} gives no certified radius but the grid has {len(certified)} certified cells; "
            f"only {able} certify — use grid l2, or drop the certified cells"
        )
    log.info("%s gives no certified radius: its %d certified cells are skipped", model, len(certified))
    return [c for c in cells if c not in certified]


def run_seed(
    prep: Prepared, seed: int, hooks: Hooks | None = None, label: str | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train and evaluate one seed; the rows' `model` is `label` (a report's baseline) or the model's name."""
    cfg, hooks = prep.config, hooks or Hooks()
    seed_everything(seed)
    model = build_model(cfg.model, prep.dataset.modalities, cfg.model_options, num_classes=prep.dataset.num_classes).to(
        prep.device
    )

    def on_epoch(stage: str, epoch: int, metrics: dict[str, float]) -> None:
        hooks.on_epoch(seed, stage, epoch, metrics)

    stages = model.stage_totals(model.options, cfg.train.epochs, cfg.classifier.epochs)
    staged = _staged(hooks, seed, cfg, on_epoch, model.reference_request(), stages)
    pipe = train_pipeline(model, prep.dataset, cfg.train, cfg.classifier, seed=seed, on_epoch=staged)
    start = time.perf_counter()
    rows = evaluate_pipeline(
        pipe.model,
        pipe.classifier,
        prep.dataset,
        prep.cells,
        seed=seed,
        batch_size=cfg.eval.batch_size,
        max_samples=cfg.eval.max_samples,
        batched=cfg.eval.batched,
        progress=lambda d, done, total: hooks.on_eval(seed, d, done, total),
        labels={"model": label or cfg.model, "dataset": cfg.dataset},
        split=cfg.eval.split,
    )
    info = {
        "seed": seed,
        "train_seconds": pipe.seconds,
        "eval_seconds": time.perf_counter() - start,
        "history": pipe.history,
    }
    hooks.on_seed_done(seed, rows)
    return rows, info


def _staged(
    hooks: Hooks,
    seed: int,
    cfg: RunConfig,
    on_epoch: EpochCallback,
    reference: ReferenceRequest | None,
    stages: tuple[int, int],
) -> EpochCallback:
    """Announce each stage when its first epoch is in, and the classifier stage when the
    representation stage's last epoch is in (a model's reference pipeline trains first).
    `stages`: the model's (representation, classifier) epochs — an own-head model has no
    classifier stage, and CRMT's representation stage is rounds × (step 1 + step 2)."""
    rep_epochs, classifier_epochs = stages
    totals = {"representation": rep_epochs, "classifier": classifier_epochs}
    if reference is not None:
        totals["reference"], totals["reference-classifier"] = reference_epochs(reference, cfg.train, cfg.classifier)
        current = ["reference"]
    else:
        current = ["classifier" if rep_epochs == 0 else "representation"]

    def cb(stage: str, epoch: int, metrics: dict[str, float]) -> None:
        if stage != current[0]:
            current[0] = stage
            hooks.on_stage(seed, stage, totals.get(stage, 0))
        on_epoch(stage, epoch, metrics)
        if stage == "representation" and epoch == rep_epochs and classifier_epochs > 0:
            current[0] = "classifier"
            hooks.on_stage(seed, "classifier", classifier_epochs)

    hooks.on_stage(seed, current[0], totals[current[0]])
    return cb


def run(cfg: RunConfig, out_dir: str | Path, hooks: Hooks | None = None, prep: Prepared | None = None) -> pd.DataFrame:
    """Train and evaluate every seed; write results.parquet, summary.md, config.yaml, history.json."""
    prep = prep or prepare(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    all_rows: list[dict[str, Any]] = []
    infos = []
    df = to_frame(all_rows)
    for seed in cfg.seeds:
        rows, info = run_seed(prep, seed, hooks)
        all_rows += rows
        infos.append(info)
        df = to_frame(all_rows)
        write_parquet(df, out / "results.parquet")
        write_text(out / "summary.md", summary_markdown(df))
        write_text(out / "history.json", json.dumps(infos, indent=1))
    return df
