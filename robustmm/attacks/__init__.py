"""Perturbations and whole-grid evaluation of a frozen chain.

Importing this package registers every attack (one module each) and every named grid.
Only torch, numpy, robustmm.errors and robustmm.registry are imported here: attacks know the
chain contract, never the models or the data sets.
"""

from robustmm.attacks import bim, certified, fgm, fgsm, gaussian, missing, pgd, pgd_l2  # noqa: F401  (registration)
from robustmm.attacks.base import ATTACKS, AttackEntry, Cell, make_cell
from robustmm.attacks.grid import GRIDS, ROW_KEYS, evaluate_grid, parse_grid

__all__ = ["ATTACKS", "GRIDS", "ROW_KEYS", "AttackEntry", "Cell", "evaluate_grid", "make_cell", "parse_grid"]
