"""Cells, projections, clamping, gradients, random draws and parameter validation."""

from __future__ import annotations

import pytest
import torch

from robustmm.attacks import ATTACKS, Cell, make_cell
from robustmm.attacks.base import (
    check_param,
    clamp_to_range,
    draw,
    input_grad,
    joint_norm,
    project_l2,
    project_linf,
)
from robustmm.attacks.fgsm import fgsm
from robustmm.attacks.gaussian import gaussian
from robustmm.attacks.pgd import pgd
from robustmm.errors import ConfigError, UnknownNameError


def test_cell_is_canonical_and_hashable():
    a = Cell("pgd", ["image"], [("steps", 10), ("eps", 0.1)])
    b = Cell("pgd", ("image",), (("eps", 0.1), ("steps", 10.0)))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a.params == (("eps", 0.1), ("steps", 10.0))
    assert a.param("eps") == 0.1 and a.param("sigma") is None and a.param("sigma", 2.0) == 2.0
    assert a.target == "image" and Cell("clean").target == "none"
    assert Cell("fgm", ("image", "vector")).target == "image+vector"
    with pytest.raises(AttributeError):
        a.attack = "bim"  # type: ignore[misc]


def test_make_cell_fills_defaults():
    cell = make_cell("pgd", ("image",), eps=0.2)
    assert dict(cell.params) == {"eps": 0.2, "alpha": 0.01, "steps": 10.0, "restarts": 1.0, "random_start": 1.0}
    assert make_cell("pgd", ("image",), eps=0.2, alpha=0.01) == cell


def test_registry_entries_describe_themselves():
    assert set(ATTACKS.names()) == {"bim", "certified", "clean", "fgm", "fgsm", "gaussian", "missing", "pgd", "pgd_l2"}
    for name, entry in ATTACKS.items():
        assert entry.name == name and entry.summary and "\n" not in entry.summary
        assert entry.norm in ("linf", "l2", "none")
    assert ATTACKS.get("missing").drops_targets and not ATTACKS.get("pgd").drops_targets
    assert (
        ATTACKS.get("certified").certifies
        and not ATTACKS.get("pgd").certifies
        and not ATTACKS.get("certified").uses_grad
    )
    assert ATTACKS.get("missing").present(("image",), ("image", "vector")) == ("vector",)
    assert ATTACKS.get("pgd").present(("image",), ("image", "vector")) is None


def test_project_linf_is_a_projection():
    x0 = {"a": torch.zeros(3, 4)}
    x = {"a": torch.tensor([[0.05, -0.05, 0.3, -0.3]] * 3)}
    out = project_linf(x, x0, 0.1)["a"]
    assert torch.equal(out[0], torch.tensor([0.05, -0.05, 0.1, -0.1]))
    per_sample = project_linf(x, x0, torch.tensor([0.01, 0.1, 1.0]))["a"]
    assert per_sample.abs().amax(1).tolist() == pytest.approx([0.01, 0.1, 0.3])


def test_project_l2_is_a_true_projection_over_the_concatenation():
    g = torch.Generator().manual_seed(0)
    x0 = {"a": torch.rand(6, 1, 4, 4, generator=g), "b": torch.rand(6, 5, generator=g)}
    delta = {"a": torch.randn(6, 1, 4, 4, generator=g), "b": torch.randn(6, 5, generator=g)}
    delta = {
        k: v * torch.tensor([0.1, 0.2, 0.4, 2.0, 3.0, 5.0]).view(-1, *[1] * (v.dim() - 1)) for k, v in delta.items()
    }
    x = {k: x0[k] + delta[k] for k in x0}
    eps = 1.0
    out = project_l2(x, x0, eps)
    before = joint_norm(delta)
    after = joint_norm({k: out[k] - x0[k] for k in x0})
    inside = before <= eps
    assert inside.any() and (~inside).any()
    for k in x0:  # points inside the ball are returned exactly
        assert torch.equal(out[k][inside], x[k][inside])
    assert torch.allclose(after[~inside], torch.full_like(after[~inside], eps), atol=1e-6)
    # radial: same direction as the original displacement
    for k in x0:
        ratio = (out[k] - x0[k])[~inside].flatten(1) / delta[k][~inside].flatten(1)
        assert torch.allclose(ratio, (eps / before[~inside]).unsqueeze(1).expand_as(ratio), rtol=1e-4)
    # the norm is joint: each modality alone is below eps, the concatenation is not
    sep = {k: project_l2({k: x[k]}, {k: x0[k]}, eps)[k] for k in x0}
    assert not all(torch.equal(sep[k], out[k]) for k in x0)


def test_project_l2_per_sample_eps():
    x0 = {"a": torch.zeros(3, 2)}
    x = {"a": torch.tensor([[3.0, 4.0]] * 3)}  # norm 5
    out = project_l2(x, x0, torch.tensor([1.0, 2.0, 10.0]))["a"]
    assert out.norm(dim=1).tolist() == pytest.approx([1.0, 2.0, 5.0])


def test_clamp_to_range_uses_the_declared_range():
    x = torch.tensor([-2.0, 0.5, 3.0])
    assert clamp_to_range(x, (-1.0, 1.0)).tolist() == [-1.0, 0.5, 1.0]


def test_input_grad_matches_autograd_of_summed_cross_entropy(toy):
    x = {k: v[:10] for k, v in toy.inputs.items()}
    y = toy.labels[:10]
    grads = input_grad(toy.chain, x, y, ("image",))
    assert set(grads) == {"image"}
    leaf = x["image"].clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(toy.chain({"image": leaf, "vector": x["vector"]}), y, reduction="sum")
    (expected,) = torch.autograd.grad(loss, leaf)
    assert torch.allclose(grads["image"], expected)
    # summed: a sample's gradient does not depend on the rest of the batch
    alone = input_grad(toy.chain, {k: v[:1] for k, v in x.items()}, y[:1], ("image",))["image"]
    assert torch.allclose(alone[0], grads["image"][0], atol=1e-6)
    assert all(p.grad is None for p in toy.model.parameters())


def test_draw_blocks_reproduce_separate_generators():
    like = torch.zeros(1)
    gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    joint = draw("normal", (9, 2), like, gens)
    alone = torch.cat([draw("normal", (3, 2), like, torch.Generator().manual_seed(s)) for s in (1, 2, 3)])
    assert torch.equal(joint, alone)
    with pytest.raises(ConfigError, match="rng=torch.Generator"):
        draw("uniform", (2,), like, None)
    with pytest.raises(ConfigError, match="equal blocks"):
        draw("uniform", (5,), like, gens[:2])


def test_attacks_do_not_use_the_global_rng(toy):
    x = {k: v[:8] for k, v in toy.inputs.items()}
    state = torch.get_rng_state()
    a = pgd(toy.chain, x, toy.labels[:8], ("image",), toy.ranges, rng=torch.Generator().manual_seed(0))
    b = gaussian(toy.chain, x, toy.labels[:8], ("vector",), toy.ranges, rng=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)
    a2 = pgd(toy.chain, x, toy.labels[:8], ("image",), toy.ranges, rng=torch.Generator().manual_seed(0))
    b2 = gaussian(toy.chain, x, toy.labels[:8], ("vector",), toy.ranges, rng=torch.Generator().manual_seed(0))
    assert torch.equal(a["image"], a2["image"]) and torch.equal(b["vector"], b2["vector"])
    a3 = pgd(toy.chain, x, toy.labels[:8], ("image",), toy.ranges, rng=torch.Generator().manual_seed(1))
    b3 = gaussian(toy.chain, x, toy.labels[:8], ("vector",), toy.ranges, rng=torch.Generator().manual_seed(1))
    assert not torch.equal(a["image"], a3["image"]) and not torch.equal(b["vector"], b3["vector"])


@pytest.mark.parametrize(
    ("attack", "name", "value", "fragment"),
    [
        ("fgsm", "eps", -0.1, "eps=-0.1 is invalid; eps must be > 0"),
        ("fgsm", "eps", 0.0, "eps=0.0 is invalid"),
        ("fgsm", "eps", float("nan"), "eps=nan is invalid"),
        ("bim", "alpha", 0.0, "alpha=0.0 is invalid; alpha must be > 0"),
        ("bim", "steps", 0, "steps=0 is invalid; steps must be an integer >= 1"),
        ("bim", "steps", 2.5, "steps=2.5 is invalid"),
        ("pgd", "restarts", 0, "restarts=0 is invalid; restarts must be an integer >= 1"),
        ("pgd", "random_start", 2, "random_start=2 is invalid"),
        ("gaussian", "sigma", -0.5, "sigma=-0.5 is invalid; sigma must be >= 0"),
        ("pgd", "eps", "big", "eps='big' is not a number"),
        ("pgd", "epsilon", 0.1, "has no parameter 'epsilon' (did you mean 'eps'?)"),
    ],
)
def test_parameter_validation_messages(attack, name, value, fragment):
    with pytest.raises(ConfigError) as err:
        check_param(attack, name, value)
    message = str(err.value)
    assert fragment in message and "\n" not in message
    assert attack in message


def test_per_sample_parameter_validation():
    assert isinstance(check_param("pgd", "eps", torch.tensor([0.1, 0.2]), n=2), torch.Tensor)
    with pytest.raises(ConfigError, match=r"eps=-0\.2.* is invalid"):
        check_param("pgd", "eps", torch.tensor([0.1, -0.2]), n=2)
    with pytest.raises(ConfigError, match=r"shape \(3,\)"):
        check_param("pgd", "eps", torch.tensor([0.1, 0.2, 0.3]), n=2)
    with pytest.raises(ConfigError, match="give one number$"):
        check_param("pgd", "steps", torch.tensor([1, 2]), n=2)


def test_attack_call_validation(toy):
    x, y = toy.inputs, toy.labels
    with pytest.raises(ConfigError, match=r"unknown modality 'imgae' in targets \(did you mean 'image'\?\)"):
        fgsm(toy.chain, x, y, ("imgae",), toy.ranges)
    with pytest.raises(ConfigError, match="needs at least one target"):
        fgsm(toy.chain, x, y, (), toy.ranges)
    with pytest.raises(ConfigError, match="no value range for modality 'vector'"):
        fgsm(toy.chain, x, y, ("vector",), {"image": (0.0, 1.0)})
    with pytest.raises(ConfigError, match="has no parameter 'sigma'"):
        fgsm(toy.chain, x, y, ("image",), toy.ranges, sigma=0.1)
    with pytest.raises(ConfigError, match="cannot drop every modality"):
        ATTACKS.get("missing").fn(toy.chain, x, y, ("image", "vector"), toy.ranges)
    with pytest.raises(ConfigError, match="takes no targets"):
        ATTACKS.get("clean").fn(toy.chain, x, y, ("image",), toy.ranges)
    with pytest.raises(UnknownNameError, match="did you mean 'pgd'"):
        ATTACKS.get("pgdd")


def test_attacks_import_only_torch_and_the_core():
    """attacks/ knows the chain contract, never robustmm.models or robustmm.data."""
    import ast
    import sys
    from pathlib import Path

    import robustmm.attacks as package

    allowed = {"torch", "numpy", "robustmm.errors", "robustmm.registry"}
    for path in Path(package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                ok = top in sys.stdlib_module_names or top in allowed or name.startswith("robustmm.attacks")
                assert ok or name in allowed, f"{path.name} imports {name}"
