"""Perturbation grids: named grids, grid specs from configs, and whole-grid evaluation.

`evaluate_grid` is the hot loop of every sweep trial, so it batches: cells that share an
attack, targets and loop shape (steps, restarts) run together on the test chunk replicated once
per cell, with per-sample eps/alpha/sigma tensors, i.e. one forward/backward per attack step for
the whole group. Each cell draws its randomness from its own generator seeded from
(seed, cell, chunk), so the batched and the per-cell loop draw the same numbers.
"""

from __future__ import annotations

import itertools
import logging
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from robustmm.attacks.base import (
    ATTACKS,
    BATCHABLE,
    AttackEntry,
    Cell,
    Differentiable,
    Ranges,
    check_cell,
    check_ranges,
    did_you_mean,
    make_cell,
)
from robustmm.attacks.mask import encode_mask
from robustmm.errors import ConfigError
from robustmm.registry import Registry

log = logging.getLogger(__name__)

GridFn = Callable[[tuple[str, ...]], list[Cell]]
GRIDS: Registry[GridFn] = Registry("grid")

ROW_PARAMS = ("eps", "alpha", "sigma", "steps", "restarts")
ROW_KEYS = ("perturbation", "target", *ROW_PARAMS, "accuracy", "correct", "n", "correct_mask")
STATISTICS = ("certified_radius", "vulnerability", "vulnerability_ratio")
"""Perturbation names of the certificate-statistic rows, whose number is in `value`, not `accuracy`."""

# Seed 000's grid (SPEC §1).
THESIS_SIGMAS = (0.25, 0.5, 0.75, 1.0)
THESIS_FGSM_EPS = (0.015, 0.035, 0.075, 0.13, 0.2)
THESIS_BIM = ((0.1, 0.02), (0.1, 0.04), (0.2, 0.06), (0.2, 0.08), (0.3, 0.1), (0.3, 0.12))
THESIS_PGD = ((0.1, 0.01), (0.1, 0.02), (0.2, 0.04), (0.2, 0.06), (0.3, 0.08), (0.3, 0.1))


def _missing(modality_names: tuple[str, ...]) -> list[Cell]:
    """One missing-modality cell per modality (none when there is a single modality to keep)."""
    if len(modality_names) < 2:
        return []
    return [make_cell("missing", (m,)) for m in modality_names]


@GRIDS.register("thesis")
def thesis(modality_names: tuple[str, ...]) -> list[Cell]:
    """Seed 000's grid: clean; per modality missing, Gaussian, FGSM, BIM (K=10), PGD (K=10)."""
    cells = [make_cell("clean"), *_missing(modality_names)]
    for m in modality_names:
        t = (m,)
        cells += [make_cell("gaussian", t, sigma=s) for s in THESIS_SIGMAS]
        cells += [make_cell("fgsm", t, eps=e) for e in THESIS_FGSM_EPS]
        cells += [make_cell("bim", t, eps=e, alpha=a, steps=10) for e, a in THESIS_BIM]
        cells += [make_cell("pgd", t, eps=e, alpha=a, steps=10, restarts=1) for e, a in THESIS_PGD]
    return cells


@GRIDS.register("smoke")
def smoke(modality_names: tuple[str, ...]) -> list[Cell]:
    """A few cells for quick runs: clean, missing, one Gaussian, FGSM and PGD (K=5) at two eps."""
    cells = [make_cell("clean"), *_missing(modality_names)]
    for m in modality_names:
        t = (m,)
        cells.append(make_cell("gaussian", t, sigma=0.5))
        cells += [make_cell("fgsm", t, eps=e) for e in (0.1, 0.2)]
        cells += [make_cell("pgd", t, eps=e, alpha=e / 4, steps=5) for e in (0.1, 0.2)]
    return cells


@GRIDS.register("l2")
def l2(modality_names: tuple[str, ...]) -> list[Cell]:
    """CRMT's L2 threat: FGM and L2-PGD (K=10) per modality and jointly; plus missing."""
    cells = [make_cell("clean"), *_missing(modality_names)]
    groups = [(m,) for m in modality_names]
    if len(modality_names) > 1:
        groups.append(tuple(modality_names))
    for t in groups:
        cells += [make_cell("fgm", t, eps=e) for e in (0.25, 0.5, 1.0)]
        cells += [make_cell("pgd_l2", t, eps=e, alpha=e / 4, steps=10) for e in (0.25, 0.5, 1.0)]
    return cells


CRMT_RADII = (0.1, 0.25, 0.5, 1.0)


@GRIDS.register("crmt")
def crmt(modality_names: tuple[str, ...]) -> list[Cell]:
    """CRMT's Tables 1-2: FGM, L2-PGD (K=10) joint eps=0.5, per modality 1.0; missing; certified radii.

    Certified accuracy at L2 radii 0.1-1 (joint and per modality) needs a certifying model."""
    cells = [make_cell("clean"), *_missing(modality_names)]
    groups = [(tuple(modality_names), 0.5)] if len(modality_names) > 1 else []
    groups += [((m,), 1.0) for m in modality_names]
    for t, e in groups:
        cells += [make_cell("fgm", t, eps=e), make_cell("pgd_l2", t, eps=e, alpha=e / 4, steps=10)]
    for t, _ in groups:
        cells += [make_cell("certified", t, eps=r) for r in CRMT_RADII]
    return cells


def certificate_cells(cells: Sequence[Cell]) -> list[Cell]:
    """The cells that need a certifying chain."""
    return [c for c in cells if ATTACKS.get(c.attack).certifies]


def _targets(value: Any, names: tuple[str, ...], entry: AttackEntry, where: str) -> list[tuple[str, ...]]:
    """'each' -> one cell per modality, 'all' -> one joint cell, a name or a list -> that set."""

    def canon(group: Sequence[str]) -> tuple[str, ...]:
        return tuple(sorted(group, key=lambda t: names.index(t) if t in names else len(names)))

    if value is None:
        return [(m,) for m in names] if entry.needs_targets else [()]
    if value == "each":
        return [(m,) for m in names]
    if value == "all":
        return [names]
    if isinstance(value, str):
        return [(value,)]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return [canon(value)]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple)) for v in value):
        return [canon(v) for v in value]
    raise ConfigError(f"{where}: targets={value!r} is invalid; give 'each', 'all', a modality name or a list of names")


def _expand(item: Any, names: tuple[str, ...], index: int) -> list[Cell]:
    """One grid-spec entry -> cells: list-valued parameters expand to their cartesian product."""
    if isinstance(item, Cell):
        return [item]
    if not isinstance(item, Mapping) or not isinstance(item.get("attack"), str):
        raise ConfigError(
            f"grid entry {index} is {item!r}; give a dict like "
            "{'attack': 'pgd', 'targets': 'each', 'eps': [0.1, 0.2]}"
        )
    name = item["attack"]
    entry = ATTACKS.get(name)
    where = f"grid entry {index} ({name})"
    params = {k: v for k, v in item.items() if k not in ("attack", "targets")}
    keys = ("attack", "targets", *entry.param_names)
    for key in params:
        if key not in entry.param_names:
            raise ConfigError(f"{where}: unknown key {key!r}{did_you_mean(key, keys)}; known keys: {', '.join(keys)}")
    values = [list(v) if isinstance(v, (list, tuple)) else [v] for v in params.values()]
    for key, vs in zip(params, values, strict=True):
        if not vs:
            raise ConfigError(f"{where}: {key}=[] is empty; give at least one value")
    groups = _targets(item.get("targets"), names, entry, where)
    return [
        make_cell(name, t, **dict(zip(params, combo, strict=True)))
        for combo in itertools.product(*values)
        for t in groups
    ]


def parse_grid(spec: str | Sequence[Mapping[str, Any] | Cell], modality_names: Sequence[str]) -> list[Cell]:
    """A grid name or a list of cell dicts -> validated, de-duplicated cells, clean first once.

    Everything is checked here, before any compute, so a typo fails in a second, not after
    the model trained.
    """
    names = tuple(modality_names)
    if not names:
        raise ConfigError("parse_grid needs at least one modality name")
    if isinstance(spec, str):
        cells = GRIDS.get(spec)(names)
    elif isinstance(spec, (list, tuple)):
        cells = [cell for i, item in enumerate(spec) for cell in _expand(item, names, i)]
    else:
        raise ConfigError(f"grid {spec!r} is neither a grid name ({', '.join(GRIDS.names())}) nor a list of cell dicts")
    for cell in cells:
        check_cell(cell, names)
    return list(dict.fromkeys([make_cell("clean"), *cells]))


def cell_seed(seed: int, cell: Cell, chunk: int) -> int:
    """A stable 32-bit seed per (run seed, cell, chunk): crc32 of the repr, not Python's salted hash()."""
    return zlib.crc32(f"{int(seed)}|{cell!r}|{int(chunk)}".encode())


def _groups(cells: Sequence[Cell], batched: bool, per_group: int) -> list[list[int]]:
    """Indices of cells that can share a pass: same attack, targets, steps and restarts."""
    if not batched:
        return [[i] for i in range(len(cells))]
    by_key: dict[tuple, list[int]] = {}
    for i, c in enumerate(cells):
        fixed = tuple(p for p in c.params if p[0] not in BATCHABLE)
        by_key.setdefault((c.attack, c.targets, fixed), []).append(i)
    return [idx[j : j + per_group] for idx in by_key.values() for j in range(0, len(idx), per_group)]


def _run_group(
    chain: Differentiable,
    entry: AttackEntry,
    cells: Sequence[Cell],
    inputs: Mapping[str, Tensor],
    labels: Tensor,
    ranges: Ranges,
    seed: int,
    chunk: int,
) -> Tensor:
    """Which samples of the chunk each cell classifies correctly, (cells, samples) bool on the CPU;
    all cells of the group in one batch."""
    g, n, device = len(cells), len(labels), labels.device
    gens = [torch.Generator(device=device).manual_seed(cell_seed(seed, c, chunk)) for c in cells]
    params: dict[str, Any] = {}
    for name in entry.param_names:
        values = [c.param(name, entry.default(name)) for c in cells]
        if name in BATCHABLE and g > 1:
            dtype = next(iter(inputs.values())).dtype
            params[name] = torch.tensor(values, dtype=dtype, device=device).repeat_interleave(n)
        else:
            params[name] = values[0]
    x = {k: v.repeat(g, *([1] * (v.dim() - 1))) for k, v in inputs.items()} if g > 1 else dict(inputs)
    y = labels.repeat(g) if g > 1 else labels
    rng = gens[0] if g == 1 else gens
    targets = cells[0].targets
    with torch.no_grad() if not entry.uses_grad else torch.enable_grad():
        adv = entry.fn(chain, x, y, targets, ranges, rng=rng, **params)
    with torch.no_grad():
        logits = chain(adv, present=entry.present(targets, tuple(inputs)))
        ok = logits.argmax(1) == y
        if entry.certifies:  # eps: one radius, or one per sample of the replicated group
            ok &= chain.certified_radius(adv, y, targets) >= params["eps"]  # type: ignore[attr-defined]
        return ok.view(g, n).cpu()


def _row(cell: Cell, ok: Tensor) -> dict[str, Any]:
    """A cell's row; `ok` says per sample whether it was classified correctly (kept as `correct_mask`)."""
    n, correct = len(ok), int(ok.sum())
    row: dict[str, Any] = {"perturbation": cell.attack, "target": cell.target}
    for p in ROW_PARAMS:
        value = cell.param(p)
        row[p] = math.nan if value is None else float(value)
    row.update(accuracy=correct / n if n else math.nan, correct=correct, n=n, correct_mask=encode_mask(ok.numpy()))
    return row


def evaluate_grid(
    chain: Differentiable,
    inputs: Mapping[str, Tensor],
    labels: Tensor,
    cells: Sequence[Cell],
    ranges: Ranges,
    *,
    seed: int,
    batch_size: int = 512,
    batched: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
    max_rows: int = 8192,
) -> list[dict[str, Any]]:
    """Accuracy of the chain on every cell: one row per cell, in the order of `cells`, with the
    per-sample outcome in `correct_mask` (`robustmm.attacks.mask`), which the worst-case accuracy
    over attacks and budgets needs (`robustmm.worst_case`).

    The test set is processed in chunks of `batch_size` samples; with `batched=True` a group of
    cells runs on the chunk replicated once per cell, at most `max_rows` rows at once (larger
    groups are split). `batched=False` is the plain per-cell loop giving the same numbers
    (up to float reassociation). The model must already be in eval mode.
    """
    names = tuple(inputs)
    n_total = len(labels)
    if batch_size < 1 or max_rows < 1:
        raise ConfigError(f"batch_size={batch_size} and max_rows={max_rows} must both be >= 1")
    for name, x in inputs.items():
        if len(x) != n_total:
            raise ConfigError(f"modality {name!r} has {len(x)} samples but there are {n_total} labels")
    entries = {}
    for cell in cells:
        check_cell(cell, names)
        entries[cell.attack] = entry = ATTACKS.get(cell.attack)
        if not entry.drops_targets:
            check_ranges(cell.targets, ranges)
    if certificate_cells(cells) and not getattr(chain, "certifies", False):
        raise ConfigError(
            "the grid has certified cells but this chain gives no certified radius (chain.certifies is false); "
            "drop the certified cells (experiment.model_cells does) or use grid l2"
        )
    chunk_size = max(1, min(batch_size, n_total))
    groups = _groups(cells, batched, max(1, max_rows // chunk_size))
    ok: list[list[Tensor]] = [[] for _ in cells]  # per cell, its chunks' per-sample outcomes
    for done, group in enumerate(groups, start=1):
        members = [cells[i] for i in group]
        entry = entries[members[0].attack]
        for chunk, start in enumerate(range(0, n_total, chunk_size)):
            part = {k: v[start : start + chunk_size] for k, v in inputs.items()}
            chunk_ok = _run_group(chain, entry, members, part, labels[start : start + chunk_size], ranges, seed, chunk)
            for i, c in zip(group, chunk_ok, strict=True):
                ok[i].append(c)
        description = f"{members[0].attack} on {members[0].target} ({len(members)} cells)"
        log.debug("grid group %d/%d done: %s", done, len(groups), description)
        if progress is not None:
            progress(description, done, len(groups))
    empty = torch.zeros(0, dtype=torch.bool)
    return [_row(cell, torch.cat(o) if o else empty) for cell, o in zip(cells, ok, strict=True)]
