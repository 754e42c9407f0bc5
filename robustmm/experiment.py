"""One run config over its seeds: load data once, then per seed train -> freeze -> evaluate.

Everything that can be wrong with the config is found in `prepare` — before any training.
Results are written after every seed (atomically), so an interrupted run keeps what it did.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from robustmm.attacks import GRIDS, Cell, parse_grid
from robustmm.config import RunConfig
from robustmm.data import load_dataset
from robustmm.data.base import MultimodalDataset
from robustmm.device import resolve_device
from robustmm.evaluate import evaluate_pipeline, model_cells
from robustmm.files import new_folders, writing
from robustmm.models import MODELS
from robustmm.models.base import build_model
from robustmm.results import summary_markdown, to_frame, write_parquet, write_text
from robustmm.train import Checkpointing, Reporter, plan_of, run_plan, seed_everything


@dataclass
class Prepared:
    config: RunConfig
    dataset: MultimodalDataset
    cells: list[Cell]
    device: Any


def prepare(cfg: RunConfig, *, strict: bool = True, dataset: MultimodalDataset | None = None) -> Prepared:
    """Load the data (or take `dataset`, already loaded) and check the model options and the
    grid against it; trains nothing. `strict=False` drops the certified cells for a model
    without a certificate instead of failing."""
    device = resolve_device(cfg.device)
    if dataset is None:
        MODELS.get(cfg.model)  # names first: a typo fails before the data are read or generated
        if isinstance(cfg.eval.grid, str):
            GRIDS.get(cfg.eval.grid)
        dataset = load_dataset(cfg.dataset, data_dir=cfg.data_dir, options=cfg.dataset_options)
    build_model(cfg.model, dataset.modalities, cfg.model_options, num_classes=dataset.num_classes)  # validates
    cells = model_cells(cfg.model, parse_grid(cfg.eval.grid, dataset.modality_names), strict=strict)
    return Prepared(cfg, dataset.to(device), cells, device)


def run_seed(
    prep: Prepared,
    seed: int,
    reporter: Reporter | None = None,
    label: str | None = None,
    checkpointing: Checkpointing | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The one run loop of a (config, seed): build the model, train it by its plan, evaluate the
    grid on `eval.split`, and tell `reporter` all along; the CLI, reports and Ray trials are front
    ends of it. The rows' `model` is `label` (a report's baseline) or the model's name.
    `checkpointing` continues from a resume state and hands checkpoint states to the reporter."""
    cfg, reporter = prep.config, reporter or Reporter()
    seed_everything(seed)
    model = build_model(cfg.model, prep.dataset.modalities, cfg.model_options, num_classes=prep.dataset.num_classes)
    model = model.to(prep.device)
    pipe = run_plan(
        plan_of(model, cfg.train, cfg.classifier),
        model,
        prep.dataset,
        seed=seed,
        reporter=reporter,
        checkpointing=checkpointing,
    )
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
        progress=lambda d, done, total: reporter.on_eval(seed, d, done, total),
        labels={"model": label or cfg.model, "dataset": cfg.dataset},
        split=cfg.eval.split,
    )
    info = {
        "seed": seed,
        "train_seconds": pipe.seconds,
        "eval_seconds": time.perf_counter() - start,
        "history": pipe.history,
    }
    reporter.on_seed_done(seed, rows)
    return rows, info


def run(
    cfg: RunConfig, out_dir: str | Path, reporter: Reporter | None = None, prep: Prepared | None = None
) -> pd.DataFrame:
    """Train and evaluate every seed; write results.parquet, summary.md, config.yaml, history.json."""
    prep = prep or prepare(cfg)
    out = Path(out_dir)
    with writing(out), new_folders(out):  # a first write refused (disk full, read-only) leaves no folder
        write_text(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    all_rows: list[dict[str, Any]] = []
    infos = []
    df = to_frame(all_rows)
    for seed in cfg.seeds:
        rows, info = run_seed(prep, seed, reporter)
        all_rows += rows
        infos.append(info)
        df = to_frame(all_rows)
        write_parquet(df, out / "results.parquet")
        write_text(out / "summary.md", summary_markdown(df))
        write_text(out / "history.json", json.dumps(infos, indent=1))
    return df
