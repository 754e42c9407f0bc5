"""Named grids, grid specs, and whole-grid evaluation (batched == per-cell, seeded)."""

from __future__ import annotations

import math

import pytest
import torch

from robustmm.attacks import GRIDS, ROW_KEYS, Cell, evaluate_grid, make_cell, parse_grid
from robustmm.attacks.mask import decode_mask
from robustmm.errors import ConfigError, UnknownNameError

NAMES = ("image", "vector")


def keyset(cells):
    return {(c.attack, c.targets, tuple((k, v) for k, v in c.params if k not in ("random_start",))) for c in cells}


def test_thesis_grid_is_exactly_the_spec():
    cells = parse_grid("thesis", NAMES)
    expected = {("clean", (), ())}
    for m in NAMES:
        t = (m,)
        expected.add(("missing", t, ()))
        expected |= {("gaussian", t, (("sigma", s),)) for s in (0.25, 0.5, 0.75, 1.0)}
        expected |= {("fgsm", t, (("eps", e),)) for e in (0.015, 0.035, 0.075, 0.13, 0.2)}
        for e, a in ((0.1, 0.02), (0.1, 0.04), (0.2, 0.06), (0.2, 0.08), (0.3, 0.1), (0.3, 0.12)):
            expected.add(("bim", t, (("alpha", a), ("eps", e), ("steps", 10.0))))
        for e, a in ((0.1, 0.01), (0.1, 0.02), (0.2, 0.04), (0.2, 0.06), (0.3, 0.08), (0.3, 0.1)):
            expected.add(("pgd", t, (("alpha", a), ("eps", e), ("restarts", 1.0), ("steps", 10.0))))
    assert len(cells) == 2 * (1 + 4 + 5 + 6 + 6) + 1 == 45
    assert keyset(cells) == expected
    assert cells[0] == Cell("clean") and sum(c.attack == "clean" for c in cells) == 1
    assert all(c.param("random_start") == 1.0 for c in cells if c.attack == "pgd")
    assert len(parse_grid("thesis", ("a", "b", "c"))) == 3 * 22 + 1


def test_smoke_and_l2_grids():
    smoke = parse_grid("smoke", NAMES)
    for m in NAMES:
        mine = [c for c in smoke if c.targets == (m,)]
        assert sorted(c.attack for c in mine) == ["fgsm", "fgsm", "gaussian", "missing", "pgd", "pgd"]
        assert all(c.param("steps") == 5 for c in mine if c.attack == "pgd")
    l2 = parse_grid("l2", NAMES)
    assert {c.targets for c in l2 if c.attack in ("fgm", "pgd_l2")} == {("image",), ("vector",), NAMES}
    assert {c.param("eps") for c in l2 if c.attack == "fgm"} >= {0.5, 1.0}
    assert set(GRIDS.names()) >= {"thesis", "smoke", "l2"}
    assert not any(c.attack == "missing" for c in parse_grid("thesis", ("image",)))  # nothing would be left


def test_parse_grid_expands_and_canonicalises():
    spec = [
        {"attack": "pgd", "targets": ["vector", "image"], "eps": [0.1, 0.2], "alpha": [0.01, 0.02], "steps": 5},
        {"attack": "gaussian", "targets": "each", "sigma": [0.1, 0.2]},
        {"attack": "fgsm", "targets": "all", "eps": 0.1},
        {"attack": "fgsm", "targets": "image", "eps": 0.1},
        {"attack": "missing", "targets": [["image"], ["vector"]]},
        {"attack": "clean"},
        {"attack": "gaussian", "sigma": 0.1},  # duplicates of the 'each' cells above
    ]
    cells = parse_grid(spec, NAMES)
    assert cells[0] == Cell("clean") and sum(c.attack == "clean" for c in cells) == 1
    pgd = [c for c in cells if c.attack == "pgd"]
    assert len(pgd) == 4 and {c.targets for c in pgd} == {NAMES}
    assert {(c.param("eps"), c.param("alpha")) for c in pgd} == {(0.1, 0.01), (0.1, 0.02), (0.2, 0.01), (0.2, 0.02)}
    assert all(c.param("steps") == 5 and c.param("restarts") == 1 for c in pgd)  # defaults filled
    assert len([c for c in cells if c.attack == "gaussian"]) == 4
    assert {c.targets for c in cells if c.attack == "fgsm"} == {NAMES, ("image",)}
    assert {c.targets for c in cells if c.attack == "missing"} == {("image",), ("vector",)}
    assert len(cells) == len(set(cells)) == 1 + 4 + 4 + 2 + 2
    assert parse_grid([make_cell("fgsm", ("image",), eps=0.2)], NAMES)[1].param("eps") == 0.2


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("thesys", "unknown grid 'thesys' (did you mean 'thesis'?)"),
        ([{"attack": "pgdd", "eps": 0.1}], "unknown attack 'pgdd' (did you mean 'pgd'?)"),
        ([{"attack": "pgd", "eps": -0.1}], "eps=-0.1 is invalid; eps must be > 0"),
        ([{"attack": "pgd", "eps": [0.1, 0.0]}], "eps=0.0 is invalid"),
        ([{"attack": "pgd", "alpha": 0}], "alpha=0 is invalid"),
        ([{"attack": "bim", "steps": 0}], "steps=0 is invalid; steps must be an integer >= 1"),
        ([{"attack": "pgd", "restarts": 0}], "restarts=0 is invalid"),
        ([{"attack": "gaussian", "sigma": -1}], "sigma=-1 is invalid; sigma must be >= 0"),
        ([{"attack": "pgd", "targets": ["imgae"]}], "unknown modality 'imgae' in targets (did you mean 'image'?)"),
        ([{"attack": "pgd", "epsilon": 0.1}], "unknown key 'epsilon' (did you mean 'eps'?)"),
        ([{"attack": "pgd", "targets": 3}], "targets=3 is invalid"),
        ([{"attack": "pgd", "eps": []}], "eps=[] is empty"),
        ([{"attack": "missing", "targets": "all"}], "cannot drop every modality"),
        ([{"attack": "clean", "targets": "image"}], "takes no targets"),
        ([{"eps": 0.1}], "grid entry 0 is {'eps': 0.1}"),
        (["pgd"], "grid entry 0 is 'pgd'"),
        (42, "grid 42 is neither a grid name"),
    ],
)
def test_parse_grid_errors_are_one_clear_line(spec, fragment):
    with pytest.raises(ConfigError) as err:
        parse_grid(spec, NAMES)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_unknown_names_are_unknown_name_errors():
    with pytest.raises(UnknownNameError):
        parse_grid("nope", NAMES)


def rows_equal(a, b):
    return repr(a) == repr(b)  # NaN-aware


@pytest.fixture(scope="module")
def thesis_rows(toy):
    cells = parse_grid("thesis", NAMES)
    args = (toy.chain, toy.inputs, toy.labels, cells, toy.ranges)
    batched = evaluate_grid(*args, seed=0, batch_size=64, max_rows=200)  # forces group splitting
    per_cell = evaluate_grid(*args, seed=0, batch_size=64, batched=False)
    return cells, batched, per_cell


def test_rows_schema(toy, thesis_rows):
    cells, rows, _ = thesis_rows
    assert len(rows) == len(cells)
    for cell, row in zip(cells, rows, strict=True):
        assert tuple(row) == ROW_KEYS
        assert row["perturbation"] == cell.attack and row["target"] == cell.target
        assert row["n"] == len(toy.labels) and 0 <= row["accuracy"] <= 1
        assert row["accuracy"] == row["correct"] / row["n"] and isinstance(row["correct"], int)
        for p in ("eps", "alpha", "sigma", "steps", "restarts"):
            value = cell.param(p)
            assert isinstance(row[p], float)
            assert math.isnan(row[p]) if value is None else row[p] == value
    clean = rows[0]
    assert clean["perturbation"] == "clean" and clean["target"] == "none"
    assert clean["accuracy"] == pytest.approx(toy.accuracy(toy.inputs))
    missing = next(r for r in rows if r["perturbation"] == "missing" and r["target"] == "image")
    assert missing["accuracy"] == pytest.approx(toy.accuracy(toy.inputs, present=("vector",)))
    assert rows[cells.index(make_cell("pgd", ("image",), eps=0.3, alpha=0.1))]["accuracy"] < clean["accuracy"]


def test_batched_equals_per_cell(thesis_rows):
    cells, batched, per_cell = thesis_rows
    for cell, a, b in zip(cells, batched, per_cell, strict=True):
        assert abs(a["correct"] - b["correct"]) <= 1, (str(cell), a, b)
        diff = decode_mask(a["correct_mask"], a["n"]) != decode_mask(b["correct_mask"], b["n"])
        assert diff.sum() <= 1, str(cell)


def test_rows_keep_which_samples_were_correct(toy, thesis_rows):
    """The mask covers every chunk in test-set order (64-sample chunks here) and sums to `correct`."""
    _, rows, _ = thesis_rows
    assert len(toy.labels) > 64
    for row in rows:
        mask = decode_mask(row["correct_mask"], row["n"])
        assert mask.dtype == bool and mask.shape == (row["n"],) and int(mask.sum()) == row["correct"]
    with torch.no_grad():
        expected = (toy.chain(toy.inputs).argmax(1) == toy.labels).numpy()
    assert (decode_mask(rows[0]["correct_mask"], rows[0]["n"]) == expected).all()
    missing = next(r for r in rows if r["perturbation"] == "missing" and r["target"] == "image")
    with torch.no_grad():
        expected = (toy.chain(toy.inputs, present=("vector",)).argmax(1) == toy.labels).numpy()
    assert (decode_mask(missing["correct_mask"], missing["n"]) == expected).all()


def test_batched_attack_equals_cells_alone(toy):
    """The attack-level identity under the grid: replicated batch + per-sample eps + one generator per cell."""
    from robustmm.attacks.pgd import pgd

    x = {k: v[:20] for k, v in toy.inputs.items()}
    y = toy.labels[:20]
    eps = (0.1, 0.2, 0.3)
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    rep = {k: v.repeat(3, *[1] * (v.dim() - 1)) for k, v in x.items()}
    eps_t = torch.tensor(eps).repeat_interleave(20)
    together = pgd(toy.chain, rep, y.repeat(3), ("image", "vector"), toy.ranges, eps=eps_t, alpha=eps_t / 4, rng=gens)
    for i, e in enumerate(eps):
        alone = pgd(
            toy.chain, x, y, ("image", "vector"), toy.ranges, eps=e, alpha=e / 4, rng=torch.Generator().manual_seed(i)
        )
        for k in x:
            assert torch.allclose(together[k][20 * i : 20 * (i + 1)], alone[k], atol=1e-6)


class Recorder:
    """A chain that counts calls and records what it saw."""

    def __init__(self, toy) -> None:
        self.toy, self.calls = toy, []

    def __call__(self, inputs, present=None):
        self.calls.append((present, torch.is_grad_enabled(), {k: v.detach().clone() for k, v in inputs.items()}))
        return self.toy.chain(inputs, present)


def test_one_pass_per_attack_step_per_group(toy):
    """Thesis grid, one chunk: clean 1 + missing 2 + per modality (gaussian 1 + fgsm 2 + bim 11 + pgd 11)."""
    chain = Recorder(toy)
    evaluate_grid(chain, toy.inputs, toy.labels, parse_grid("thesis", NAMES), toy.ranges, seed=0)
    assert len(chain.calls) == 1 + 2 + 2 * (1 + 2 + 11 + 11)
    per_cell = Recorder(toy)
    evaluate_grid(per_cell, toy.inputs, toy.labels, parse_grid("thesis", NAMES), toy.ranges, seed=0, batched=False)
    assert len(per_cell.calls) == 1 + 2 + 2 * (4 + 5 * 2 + 6 * 11 + 6 * 11)


def test_missing_uses_present_and_no_grad_inference(toy):
    chain = Recorder(toy)
    cells = [make_cell("clean"), make_cell("missing", ("image",)), make_cell("gaussian", ("vector",), sigma=0.3)]
    evaluate_grid(chain, toy.inputs, toy.labels, cells, toy.ranges, seed=0)
    assert [(present, grad) for present, grad, _ in chain.calls] == [(None, False), (("vector",), False), (None, False)]


def gaussian_draws(toy, seed):
    chain = Recorder(toy)
    cells = [make_cell("gaussian", ("image",), sigma=0.5), make_cell("pgd", ("vector",), eps=0.2, alpha=0.05, steps=1)]
    rows = evaluate_grid(chain, toy.inputs, toy.labels, cells, toy.ranges, seed=seed, batch_size=128)
    return rows, [c[2] for c in chain.calls]


def test_seeded_and_reproducible(toy):
    rows0, seen0 = gaussian_draws(toy, 0)
    rows0b, seen0b = gaussian_draws(toy, 0)
    rows1, seen1 = gaussian_draws(toy, 1)
    assert rows_equal(rows0, rows0b)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(seen0, seen0b, strict=True) for k in a)
    # every call that saw a perturbed tensor (Gaussian noise, PGD start) saw different draws
    assert len(seen0) == len(seen1)
    assert all(
        not torch.equal(a["image"], b["image"]) or not torch.equal(a["vector"], b["vector"])
        for a, b in zip(seen0, seen1, strict=True)
    )


def test_progress_reports_each_group(toy):
    seen = []
    cells = parse_grid("smoke", NAMES)
    evaluate_grid(
        toy.chain,
        toy.inputs,
        toy.labels,
        cells,
        toy.ranges,
        seed=0,
        progress=lambda d, done, total: seen.append((d, done, total)),
    )
    total = seen[0][2]
    assert [s[1] for s in seen] == list(range(1, total + 1)) and all(s[2] == total for s in seen)
    assert all(isinstance(s[0], str) and s[0] for s in seen)
    assert total < len(cells)  # cells were grouped


def test_evaluate_grid_validates_up_front(toy):
    args = (toy.chain, toy.inputs, toy.labels)
    with pytest.raises(ConfigError, match="unknown modality 'audio'"):
        evaluate_grid(*args, [make_cell("fgsm", ("audio",))], toy.ranges, seed=0)
    with pytest.raises(ConfigError, match="no value range for modality 'vector'"):
        evaluate_grid(*args, [make_cell("fgsm", ("vector",))], {"image": (0.0, 1.0)}, seed=0)
    with pytest.raises(ConfigError, match="batch_size=0"):
        evaluate_grid(*args, [Cell("clean")], toy.ranges, seed=0, batch_size=0)
    with pytest.raises(ConfigError, match="samples but there are"):
        evaluate_grid(toy.chain, toy.inputs, toy.labels[:5], [Cell("clean")], toy.ranges, seed=0)
