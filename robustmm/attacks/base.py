"""The threat model every attack shares: cells, the attack registry, validation and helpers.

An attack is a pure function of (chain, inputs, labels, targets, ranges, params) that returns a
new inputs dict; it owns nothing else. Keeping gradients, projections, clamping and random
draws here means each attack file is only the idea of its paper, and the evaluator can run
any attack on a batch that replicates one chunk for many cells (per-sample eps/alpha/sigma
tensors, one generator per cell).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from robustmm.errors import ConfigError
from robustmm.registry import Registry, did_you_mean

Inputs = dict[str, Tensor]
Ranges = Mapping[str, tuple[float, float]]
Param = float | Tensor
Rng = torch.Generator | Sequence[torch.Generator] | None
Loss = Callable[[Inputs], Tensor] | None
"""What a gradient attack ascends: the summed cross-entropy of the chain's logits on the labels
(None, the default), or another objective of the inputs (training-time attacks on a
representation, e.g. RGMC's FGSM on the current contrastive loss)."""

BATCHABLE = ("eps", "alpha", "sigma")
"""Parameters that may differ per sample (a tensor of shape (N,)) so cells share one pass."""


class Differentiable(Protocol):
    """What an attack calls: inputs -> logits (N×C), differentiable w.r.t. the inputs.

    `robustmm.models.base.Chain` (frozen model + classifier as one module) satisfies it; the
    attacks name only this protocol, so they never import the models. A chain that certifies
    (the CRMT family) also has `certifies = True` and `certified_radius(inputs, labels, targets)
    -> (N,)`, used by the `certified` cells."""

    def __call__(self, inputs: Mapping[str, Tensor], present: tuple[str, ...] | None = None) -> Tensor: ...


@dataclass(frozen=True)
class Cell:
    """One point of a perturbation grid; frozen and hashable so it can key rows and seeds.

    Params are stored as sorted (name, float) pairs whatever order they were given in, so two
    cells that mean the same thing compare (and hash, and seed) equal.
    """

    attack: str
    targets: tuple[str, ...] = ()
    params: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))
        object.__setattr__(self, "params", tuple(sorted((str(k), float(v)) for k, v in self.params)))

    def param(self, name: str, default: float | None = None) -> float | None:
        for key, value in self.params:
            if key == name:
                return value
        return default

    @property
    def target(self) -> str:
        return "+".join(self.targets) or "none"

    def __str__(self) -> str:
        values = " ".join(f"{k}={v:g}" for k, v in self.params)
        return f"{self.attack}[{self.target}]" + (f" {values}" if values else "")


@dataclass(frozen=True)
class AttackEntry:
    """A registered attack: `robustmm list attacks` prints name, norm, params and summary.

    `uses_grad` tells the evaluator whether the attack needs autograd (else it runs under
    no_grad); `drops_targets` marks the missing-modality "attack", whose targets are removed
    from `present` when the chain is evaluated rather than perturbed; `certifies` marks the
    certified-accuracy cell, which perturbs nothing but counts a sample only when the chain's
    certified radius for the targets reaches eps (`Differentiable.certified_radius`).
    """

    name: str
    fn: Callable[..., Inputs]
    defaults: tuple[tuple[str, float], ...]
    norm: str
    summary: str
    uses_grad: bool = True
    drops_targets: bool = False
    needs_targets: bool = True
    certifies: bool = False

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.defaults)

    def default(self, name: str) -> float:
        return dict(self.defaults)[name]

    def present(self, targets: Sequence[str], modality_names: Sequence[str]) -> tuple[str, ...] | None:
        """The modalities the chain sees for this attack; None means all."""
        if not self.drops_targets:
            return None
        return tuple(m for m in modality_names if m not in targets)


ATTACKS: Registry[AttackEntry] = Registry("attack")

# name -> (elementwise test on a float64 tensor, what a valid value is)
_RULES: dict[str, tuple[Callable[[Tensor], Tensor], str]] = {
    "eps": (lambda v: v > 0, "must be > 0 (the radius of the perturbation ball)"),
    "alpha": (lambda v: v > 0, "must be > 0 (the step size)"),
    "sigma": (lambda v: v >= 0, "must be >= 0 (the noise standard deviation)"),
    "steps": (lambda v: (v >= 1) & (v == v.round()), "must be an integer >= 1"),
    "restarts": (lambda v: (v >= 1) & (v == v.round()), "must be an integer >= 1"),
    "random_start": (lambda v: (v == 0) | (v == 1), "must be 0/false or 1/true"),
}
_CONVERT: dict[str, Callable[[float], object]] = {"steps": int, "restarts": int, "random_start": bool}


def check_param_names(attack: str, names: Sequence[str]) -> None:
    entry = ATTACKS.get(attack)
    for name in names:
        if name not in entry.param_names:
            known = ", ".join(entry.param_names) or "none"
            raise ConfigError(
                f"attack {attack!r} has no parameter {name!r}{did_you_mean(name, entry.param_names)}; "
                f"its parameters: {known}"
            )


def check_param(attack: str, name: str, value: object, n: int | None = None) -> object:
    """Validate one parameter value (a number, or a per-sample tensor for BATCHABLE names).

    Returns it converted to what the attack function expects (int steps, bool random_start).
    """
    check_param_names(attack, [name])
    example = f"{name}={ATTACKS.get(attack).default(name):g}"
    if isinstance(value, Tensor) and value.dim() > 0:
        if name not in BATCHABLE or value.dim() != 1 or (n is not None and len(value) != n):
            raise ConfigError(
                f"attack {attack!r}: {name} is a tensor of shape {tuple(value.shape)}; give one number"
                + (f" or a tensor of shape ({n},), one value per sample" if name in BATCHABLE else "")
            )
        values = value.detach().to("cpu", torch.float64)
    else:
        if isinstance(value, str) or not isinstance(value, (int, float, Tensor)):
            raise ConfigError(f"attack {attack!r}: {name}={value!r} is not a number; give e.g. {example}")
        values = torch.tensor([float(value)], dtype=torch.float64)
    test, rule = _RULES.get(name, (lambda v: torch.ones_like(v, dtype=torch.bool), "must be finite"))
    bad = ~(test(values) & torch.isfinite(values))
    if bool(bad.any()):
        shown = values[bad][0].item() if isinstance(value, Tensor) and value.dim() > 0 else value
        raise ConfigError(f"attack {attack!r}: {name}={shown!r} is invalid; {name} {rule}, e.g. {example}")
    if isinstance(value, Tensor) and value.dim() > 0:
        return value
    return _CONVERT.get(name, float)(float(value))


def check_targets(attack: str, targets: Sequence[str], modality_names: Sequence[str]) -> tuple[str, ...]:
    entry = ATTACKS.get(attack)
    targets = (targets,) if isinstance(targets, str) else tuple(targets)
    known = ", ".join(modality_names)
    for t in targets:
        if t not in modality_names:
            raise ConfigError(
                f"attack {attack!r}: unknown modality {t!r} in targets{did_you_mean(t, modality_names)}; "
                f"known modalities: {known}"
            )
    if len(set(targets)) != len(targets):
        raise ConfigError(f"attack {attack!r}: targets {targets} name a modality twice; list each once")
    if entry.needs_targets and not targets:
        raise ConfigError(f"attack {attack!r} needs at least one target modality; known modalities: {known}")
    if not entry.needs_targets and targets:
        raise ConfigError(f"attack {attack!r} takes no targets, got {targets}; drop 'targets'")
    if entry.drops_targets and len(targets) == len(modality_names):
        raise ConfigError(f"attack {attack!r} cannot drop every modality {targets}; keep at least one")
    return targets


def check_ranges(targets: Sequence[str], ranges: Ranges) -> None:
    for t in targets:
        if t not in ranges:
            raise ConfigError(f"no value range for modality {t!r}; give ranges={{{t!r}: (0.0, 1.0)}}")
        lo, hi = ranges[t]
        if not lo < hi:
            raise ConfigError(f"value range {(lo, hi)} of modality {t!r} is empty; give (low, high) with low < high")


def check_cell(cell: Cell, modality_names: Sequence[str]) -> Cell:
    """Validate a cell against the registry and the data set's modalities (before any compute)."""
    ATTACKS.get(cell.attack)
    check_targets(cell.attack, cell.targets, modality_names)
    for name, value in cell.params:
        check_param(cell.attack, name, value)
    return cell


def make_cell(attack: str, targets: Sequence[str] = (), **params: float) -> Cell:
    """A complete cell: unset parameters take the attack's defaults, so equal cells compare equal."""
    entry = ATTACKS.get(attack)
    check_param_names(attack, list(params))
    merged = dict(entry.defaults)
    merged.update({k: float(check_param(attack, k, v)) for k, v in params.items()})
    return Cell(attack, tuple(targets), tuple(merged.items()))


def attack(
    name: str,
    *,
    norm: str,
    uses_grad: bool = True,
    drops_targets: bool = False,
    needs_targets: bool = True,
    certifies: bool = False,
) -> Callable[[Callable[..., Inputs]], Callable[..., Inputs]]:
    """Register an attack function and wrap it with validation.

    The parameters and their defaults are read from the function's keyword-only arguments
    (except `rng` and `loss`) and the summary from its docstring's first line, so they cannot
    drift apart. A gradient attack takes `loss` (see `Loss`); the others refuse one.
    """

    def deco(fn: Callable[..., Inputs]) -> Callable[..., Inputs]:
        sig = inspect.signature(fn)
        defaults = tuple(
            sorted(
                (p.name, float(p.default))
                for p in sig.parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in ("rng", "loss")
            )
        )
        summary = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else name
        ascends = "loss" in sig.parameters

        @functools.wraps(fn)
        def checked(
            chain: Differentiable,
            inputs: Mapping[str, Tensor],
            labels: Tensor,
            targets: Sequence[str],
            ranges: Ranges,
            *,
            rng: Rng = None,
            loss: Loss = None,
            **params: Param,
        ) -> Inputs:
            targets = check_targets(name, targets, tuple(inputs))
            if not drops_targets:
                check_ranges(targets, ranges)
            check_param_names(name, list(params))
            values = {k: check_param(name, k, v, n=len(labels)) for k, v in params.items()}
            if loss is not None:
                if not ascends:
                    raise ConfigError(f"attack {name!r} follows no gradient; it takes no loss to ascend")
                values["loss"] = loss
            return fn(chain, dict(inputs), labels, targets, ranges, rng=rng, **values)

        entry = AttackEntry(name, checked, defaults, norm, summary, uses_grad, drops_targets, needs_targets, certifies)
        ATTACKS.add(name, entry)
        return checked

    return deco


def per_sample(p: Param, like: Tensor) -> Param:
    """Broadcast a float or an (N,) tensor against an N×... tensor."""
    if isinstance(p, Tensor) and p.dim() == 1:
        p = p.to(like.dtype) if p.is_floating_point() else p
        return p.view(-1, *([1] * (like.dim() - 1)))
    return p


def input_grad(
    chain: Differentiable, inputs: Mapping[str, Tensor], labels: Tensor, targets: Sequence[str], loss: Loss = None
) -> Inputs:
    """Gradient of the summed cross-entropy (or of `loss`) w.r.t. the target modalities only.

    Summed, not averaged, so a sample's gradient does not depend on how many cells share its
    batch; torch.autograd.grad w.r.t. the inputs leaves every parameter's .grad untouched. A
    target the chain never reads (a raw-input probe on other modalities) has gradient zero.
    """
    with torch.enable_grad():
        x = {k: v.detach() for k, v in inputs.items()}
        leaves = [x[t].requires_grad_(True) for t in targets]
        value = F.cross_entropy(chain(x), labels, reduction="sum") if loss is None else loss(x)
        if not value.requires_grad:  # no target reaches the logits
            return {t: torch.zeros_like(v) for t, v in zip(targets, leaves, strict=True)}
        grads = torch.autograd.grad(value, leaves, allow_unused=True, materialize_grads=True)
    return dict(zip(targets, grads, strict=True))


def joint_norm(tensors: Mapping[str, Tensor]) -> Tensor:
    """Per-sample L2 norm of the concatenation of several N×... tensors, shape (N,)."""
    return sum(v.flatten(1).pow(2).sum(1) for v in tensors.values()).sqrt()  # type: ignore[union-attr]


def project_linf(x: Mapping[str, Tensor], x0: Mapping[str, Tensor], eps: Param) -> Inputs:
    """Projection on the L∞ ball of radius eps around x0; points inside are returned exactly."""
    out = {}
    for t, v in x.items():
        e = per_sample(eps, v)
        out[t] = torch.minimum(torch.maximum(v, x0[t] - e), x0[t] + e)
    return out


def project_l2(x: Mapping[str, Tensor], x0: Mapping[str, Tensor], eps: Param) -> Inputs:
    """Projection on the L2 ball around x0, the norm taken over the concatenation of all keys.

    A true projection (radial shrink to norm eps), not a per-coordinate clamp; points inside are
    returned exactly.
    """
    delta = {t: v - x0[t] for t, v in x.items()}
    norm = joint_norm(delta)
    outside = norm > eps
    scale = torch.where(outside, eps / norm.clamp_min(1e-12), torch.ones_like(norm))
    out = {}
    for t, v in x.items():
        shrunk = x0[t] + per_sample(scale, v) * delta[t]
        out[t] = torch.where(per_sample(outside, v), shrunk, v)
    return out


def clamp_to_range(x: Tensor, value_range: tuple[float, float]) -> Tensor:
    """Clamp to the modality's declared range (never the batch's min/max, a reference-code bug)."""
    return x.clamp(float(value_range[0]), float(value_range[1]))


def draw(kind: str, shape: Sequence[int], like: Tensor, rng: Rng) -> Tensor:
    """Uniform [0, 1) or standard-normal draws from explicit generator(s), never the global RNG.

    With a sequence of G generators the leading axis is split into G equal blocks and block k
    is drawn from generator k: this is how a batched group of cells reproduces exactly the
    draws each cell makes when evaluated alone.
    """
    fn = {"uniform": torch.rand, "normal": torch.randn}[kind]
    if rng is None:
        raise ConfigError("this attack draws random numbers; pass rng=torch.Generator().manual_seed(seed)")
    if isinstance(rng, torch.Generator):
        return fn(tuple(shape), generator=rng, dtype=like.dtype, device=like.device)
    n, blocks = shape[0], len(rng)
    if blocks == 0 or n % blocks:
        raise ConfigError(f"{n} samples cannot be split into {blocks} equal blocks, one per generator")
    block = (n // blocks, *shape[1:])
    return torch.cat([fn(block, generator=g, dtype=like.dtype, device=like.device) for g in rng])
