"""What a trial's checkpoint folder holds: its state (`state.pt`: seed index, rows so far, the
run loop's LoopState, timing, done) and, in the final one, its grid rows (`rows.parquet`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch
from ray import tune

STATE_FILE = "state.pt"
ROWS_FILE = "rows.parquet"


def write(directory: str | Path, payload: dict[str, Any], rows: list[dict[str, Any]] | None = None) -> None:
    torch.save(payload, Path(directory) / STATE_FILE)
    if rows is not None:
        pd.DataFrame(rows).to_parquet(Path(directory) / ROWS_FILE, index=False)


def load(checkpoint: tune.Checkpoint | None) -> dict[str, Any] | None:
    """The state a trial left in `checkpoint` (None without one)."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        return torch.load(Path(d) / STATE_FILE, weights_only=True)


def read_rows(checkpoint: tune.Checkpoint) -> pd.DataFrame | None:
    """The grid rows a finished trial left in its final checkpoint (None if it has none)."""
    with checkpoint.as_directory() as d:
        path = Path(d) / ROWS_FILE
        return pd.read_parquet(path) if path.is_file() else None
