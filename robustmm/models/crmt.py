"""CRMT — certifiable robust multimodal training (seed 001, Yang et al., ICLR 2024) and its
baselines: `jt`, `ojt`, `crmt-jt`, `crmt-at`, `crmt-mix`.

Late fusion, supervised, with the model's own head as the classifier (`own_head`):
per-modality encoders φ^(m), per-modality class scores s^(m) = W^(m) φ^(m)(x_m) ∈ R^K, and

    h_k(x) = Σ_m a_k^(m) s_k^(m) + b_k.

- `jt`: plain W^(m) and a ≡ 1 — exactly a linear head on the concatenated features — with CE.
- `ojt`: W̃^(m) with orthonormal rows (W̃ W̃ᵀ = I_K, through
  torch.nn.utils.parametrizations.orthogonal, so it holds at every step; the public CRMT code only
  centred and normalised each row, which leaves the rows non-orthogonal) and trainable per-class
  integration weights a^(m) ∈ R^K, with CE.
- `crmt-jt`: step 1 minimises CE + ρ·L1 (eq. 12),
  L1 = mean_i log Σ_m Σ_{k≠y} exp(s_k^(m) − s_y^(m)), computed with logsumexp, plus
  `margin_floor` (1e-5, as the public code) inside the log: without it L1 is unbounded below —
  scaling φ up drives it to −∞ and step 1 diverges (seen on the npz benchmark) — with it each
  sample's term stops at log(1e-5). Then the Lipschitz estimates τ̃_k^(m) = max over training
  samples of ‖∇_{x_m} s_k^(m)‖₂ (eq. 9) are taken, and step 2 trains `a` alone (W̃, φ, b frozen,
  BatchNorm in eval mode; the public code left it in train mode) to maximise the mean certified
  bound r(x) of eq. 10 with j the runner-up class. `rounds` repeats step 1 + step 2.
- `crmt-at`: step 1 on joint L2-PGD examples (the evaluator's pgd_l2: a true L2 projection over
  the concatenation of the modalities; the public code clamped coordinate-wise like L∞).
- `crmt-mix`: step 1 on mixup batches (λ ~ Beta(α, α), one permutation for all modalities), CE and
  L1 both mixed as λ·(·, y_a) + (1−λ)·(·, y_b) (the public code subtracted raw scores where
  eq. 12 has their exponentials).

Certificate (every model of the family, `certifies`): for a perturbation of the modalities S,

    r_S(x) = min_{j≠y} (h_y(x) − h_j(x)) / sqrt(Σ_{m∈S} (|a_y^(m)| τ̃_y^(m) + |a_j^(m)| τ̃_j^(m))²),

0 where x is misclassified. The minimum over all j≠y (not only the runner-up the paper writes)
makes it a bound for every class; S = all modalities is eq. 10, one modality is Proposition
3.4's uni-modal radius. τ̃ is a maximum of gradient norms over training samples, so for a
nonlinear encoder the radius is an ESTIMATE, not a guarantee; with `encoder: linear` the
constants are exact and so is the bound. The vulnerability indicator of modality m is
η^(m) = |a_y^(m)| τ̃_y^(m) + |a_j^(m)| τ̃_j^(m) with j the runner-up (for `jt` an upper bound of
the paper's c_j^(m) τ_j^(m)). With a modality missing its term is left out of h.

The τ̃ here are of the uni-modal scores s^(m), as eq. 9 defines them; the public code took the
gradients of the fused logits (which already carry a factor a) and zeroed only one modality's
gradient between classes. Here each gradient comes from torch.autograd.grad on a fresh input
leaf, so nothing accumulates from one class (or modality) to the next.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrizations

from robustmm.config import OptimConfig
from robustmm.data.base import ModalitySpec, Split
from robustmm.errors import ConfigError
from robustmm.models.base import ModelOptions, RepresentationModel, register_model
from robustmm.models.encoders import Encoder
from robustmm.models.plan import Craft, ModelStage, Phase, Plan, Rate, join_phases

ENCODERS = ("net", "linear")


@dataclass(frozen=True)
class LateFusionOptions(ModelOptions):
    """latent_dim is the width of each φ^(m); `encoder: linear` makes φ^(m) affine (exact τ̃)."""

    encoder: str = "net"
    lipschitz_samples: int | None = None  # training samples for τ̃ (None: all)
    lipschitz_batch: int = 256

    def check(self, specs: tuple[ModalitySpec, ...]) -> None:
        super().check(specs)
        if self.encoder not in ENCODERS:
            raise ConfigError(f"model.encoder {self.encoder!r} unknown; use one of {', '.join(ENCODERS)}")
        if self.lipschitz_samples is not None and self.lipschitz_samples < 1:
            raise ConfigError(f"model.lipschitz_samples must be ≥ 1 or null, got {self.lipschitz_samples}")
        if self.lipschitz_batch < 1:
            raise ConfigError(f"model.lipschitz_batch must be ≥ 1, got {self.lipschitz_batch}")


@dataclass(frozen=True)
class OrthogonalOptions(LateFusionOptions):
    a_init: float = 0.1  # the public code's initial integration weight


@dataclass(frozen=True)
class CRMTOptions(OrthogonalOptions):
    rho: float = 2.0
    margin_floor: float = 1e-5  # L1 = log(Σ exp(·) + floor), as the public code: bounded below
    rounds: int = 1
    step2_epochs: int = 3
    step2_lr_scale: float = 0.03
    step2_weight_decay: float = 1e-2

    def check(self, specs: tuple[ModalitySpec, ...]) -> None:
        super().check(specs)
        if self.rho < 0:
            raise ConfigError(f"model.rho must be ≥ 0, got {self.rho}")
        if self.margin_floor < 0:
            raise ConfigError(f"model.margin_floor must be ≥ 0, got {self.margin_floor}")
        if self.rounds < 1:
            raise ConfigError(f"model.rounds must be ≥ 1, got {self.rounds}")
        if self.step2_epochs < 0:
            raise ConfigError(f"model.step2_epochs must be ≥ 0, got {self.step2_epochs}")
        if not self.step2_lr_scale > 0 or self.step2_weight_decay < 0:
            raise ConfigError("model.step2_lr_scale must be > 0 and model.step2_weight_decay ≥ 0")


@dataclass(frozen=True)
class CRMTATOptions(CRMTOptions):
    at_eps: float = 0.5
    at_steps: int = 5
    at_alpha: float | None = None  # None: 2.5·at_eps/at_steps (Madry et al.)
    at_random_start: bool = True

    def check(self, specs: tuple[ModalitySpec, ...]) -> None:
        super().check(specs)
        if not self.at_eps > 0 or self.at_steps < 1 or (self.at_alpha is not None and not self.at_alpha > 0):
            raise ConfigError(
                f"model.at_eps must be > 0, at_steps ≥ 1 and at_alpha > 0 or null; got "
                f"{self.at_eps}, {self.at_steps}, {self.at_alpha}"
            )


@dataclass(frozen=True)
class CRMTMixOptions(CRMTOptions):
    mix_alpha: float = 1.0

    def check(self, specs: tuple[ModalitySpec, ...]) -> None:
        super().check(specs)
        if not self.mix_alpha > 0:
            raise ConfigError(f"model.mix_alpha must be > 0 (Beta(α, α) mixing), got {self.mix_alpha}")


class LinearEncoder(nn.Module):
    """φ(x) = A·vec(x) + c: an affine encoder whose Lipschitz constants are known exactly."""

    def __init__(self, spec: ModalitySpec, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(math.prod(spec.shape), out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x.flatten(1))


def margin_regulariser(scores: Tensor, labels: Tensor, floor: float = 0.0) -> Tensor:
    """Eq. 12 per sample: log(Σ_m Σ_{k≠y} exp(s_k^(m) − s_y^(m)) + floor), scores N×M×K, computed
    with logsumexp. `floor` > 0 bounds it below by log(floor)."""
    diff = scores - scores.gather(2, labels.view(-1, 1, 1).expand(-1, scores.shape[1], 1))
    own = F.one_hot(labels, scores.shape[2]).bool().unsqueeze(1).expand_as(diff)
    value = diff.masked_fill(own, float("-inf")).flatten(1).logsumexp(1)
    return torch.logaddexp(value, torch.tensor(math.log(floor), dtype=value.dtype)) if floor > 0 else value


def runner_up(logits: Tensor, labels: Tensor) -> Tensor:
    """The highest-scoring class other than the label."""
    return logits.masked_fill(F.one_hot(labels, logits.shape[1]).bool(), float("-inf")).argmax(1)


def bound_matrix(logits: Tensor, labels: Tensor, a: Tensor, tau: Tensor) -> tuple[Tensor, Tensor]:
    """Eq. 10 for every j at once: (numerator N×K, per-modality Lipschitz terms N×M×K) with
    numerator_j = h_y − h_j and term_{m,j} = |a_y^(m)| τ̃_y^(m) + |a_j^(m)| τ̃_j^(m)."""
    numer = logits.gather(1, labels.view(-1, 1)) - logits
    lip = a.abs() * tau  # M×K
    terms = lip[:, labels].t().unsqueeze(2) + lip.unsqueeze(0)  # (N×M×1) + (1×M×K)
    return numer, terms


class LateFusion(RepresentationModel):
    """The shared body of the family: encoders, per-modality scores, integration, bias, τ̃."""

    Options = LateFusionOptions
    options: LateFusionOptions
    own_head = True
    certifies = True
    orthogonal = False
    trainable_a = False

    def __init__(self, specs: tuple[ModalitySpec, ...], options: LateFusionOptions, num_classes: int = 10) -> None:
        super().__init__(specs, options)
        o, k = options, num_classes
        if num_classes < 2:
            raise ConfigError(f"{type(self).__name__} needs at least 2 classes, got {num_classes}")
        if self.orthogonal and o.latent_dim < k:
            raise ConfigError(
                f"model.latent_dim={o.latent_dim} < {k} classes: orthonormal head rows need latent_dim ≥ the "
                f"number of classes; set model.latent_dim={k} or more"
            )
        self.num_classes = k
        make = (
            (lambda s: LinearEncoder(s, o.latent_dim))
            if o.encoder == "linear"
            else (lambda s: Encoder(s, o.latent_dim, o.activation))
        )
        self.encoders = nn.ModuleDict({s.name: make(s) for s in specs})
        heads = {}
        for s in specs:
            head = nn.Linear(o.latent_dim, k, bias=False)
            # matrix_exp, not the default householder map for non-square weights: the latter rounds the
            # diagonal of its parameter to a sign, and weight decay pulling it below 1 zeroes W
            heads[s.name] = parametrizations.orthogonal(head, orthogonal_map="matrix_exp") if self.orthogonal else head
        self.heads = nn.ModuleDict(heads)
        self.bias = nn.Parameter(torch.zeros(k))
        a = torch.full((len(specs), k), float(getattr(o, "a_init", 1.0)))
        if self.trainable_a:
            self.a = nn.Parameter(a)
        else:
            self.register_buffer("a", a)
        self.register_buffer("tau", torch.zeros(len(specs), k))

    @property
    def latent_dim(self) -> int:
        """What `encode` returns: the class logits (model.latent_dim is the width of each φ^(m))."""
        return self.num_classes

    # ------------------------------------------------------------------ forward

    def scores(self, inputs: dict[str, Tensor], present: tuple[str, ...] | None = None) -> dict[str, Tensor]:
        """s^(m) = W^(m) φ^(m)(x_m), N×K, for the present modalities."""
        return {n: self.heads[n](self.encoders[n](inputs[n])) for n in self.present_names(present)}

    def fuse(self, scores: dict[str, Tensor], bias: Tensor | None = None) -> Tensor:
        """h = Σ_m a^(m) ⊙ s^(m) + b over the given modalities (`bias`: another b, e.g. a detached one)."""
        b = self.bias if bias is None else bias
        return sum(self.a[self.names.index(n)] * s for n, s in scores.items()) + b  # type: ignore[return-value]

    def encode(self, inputs: dict[str, Tensor], present: tuple[str, ...] | None = None) -> Tensor:
        """Class logits h(x) (the model's own head), from the present modalities only."""
        return self.fuse(self.scores(inputs, present))

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        logits = self.encode(batch)
        labels = batch["label"]
        ce = F.cross_entropy(logits, labels)
        return ce, {"ce": float(ce.detach()), "train_accuracy": _accuracy(logits, labels)}

    # ------------------------------------------------------------------ Lipschitz estimates

    @classmethod
    def plan(cls, options: ModelOptions, train: OptimConfig, classifier: OptimConfig) -> Plan:
        """Supervised, one stage, no downstream classifier (the model is its own head); τ̃ is
        estimated once training ends."""
        return Plan((ModelStage("representation", train, cls.phases(options, train), after="estimate_lipschitz"),))

    @classmethod
    def phases(cls, options: ModelOptions, train: OptimConfig) -> tuple[Phase, ...]:
        return (Phase("train", train.epochs),)

    @torch.no_grad()
    def estimate_lipschitz(self, train: Split) -> Tensor:
        """τ̃_k^(m) = max over training samples of ‖∇_{x_m} s_k^(m)(x_m)‖₂, in eval mode (so each
        sample's score depends on that sample alone and the gradient of the batch sum is the
        per-sample gradient). Every gradient is a fresh torch.autograd.grad on a fresh leaf: no
        modality's or class's gradient can leak into the next. Stored in the `tau` buffer."""
        was = self.training
        self.eval()
        n = len(train) if self.options.lipschitz_samples is None else min(len(train), self.options.lipschitz_samples)
        tau = torch.zeros_like(self.tau)
        step = self.options.lipschitz_batch
        try:
            for m, name in enumerate(self.names):
                for start in range(0, n, step):
                    x = train.inputs[name][start : min(n, start + step)].detach().clone().requires_grad_(True)
                    with torch.enable_grad():
                        s = self.heads[name](self.encoders[name](x))
                        for k in range(self.num_classes):
                            (g,) = torch.autograd.grad(s[:, k].sum(), x, retain_graph=k < self.num_classes - 1)
                            tau[m, k] = torch.maximum(tau[m, k], g.flatten(1).norm(dim=1).max())
        finally:
            self.train(was)
        self.tau.copy_(tau)
        return tau

    # ------------------------------------------------------------------ certificate

    @torch.no_grad()
    def certify(
        self, inputs: dict[str, Tensor], labels: Tensor, groups: list[tuple[str, ...]]
    ) -> tuple[dict[tuple[str, ...], Tensor], Tensor]:
        """One forward pass: r_S(x) per sample for each modality group S (module docstring), and
        η^(m) per sample (N×M: |a_y| τ̃_y + |a_j| τ̃_j, j the runner-up class).

        A misclassified sample's radius is 0: the predicted class j has h_y − h_j ≤ 0, so the
        minimum over j is ≤ 0 and is clamped there."""
        logits = self.encode(inputs)
        numer, terms = bound_matrix(logits, labels, self.a, self.tau)
        own = F.one_hot(labels, self.num_classes).bool()
        radii = {}
        for group in groups:
            rows = [self.names.index(t) for t in group]
            denom = terms[:, rows].pow(2).sum(1).sqrt()
            ratio = (numer / denom.clamp_min(1e-12)).masked_fill(own, float("inf"))
            radii[group] = ratio.min(1).values.clamp_min(0.0)
        j = runner_up(logits, labels)
        eta = terms.gather(2, j.view(-1, 1, 1).expand(-1, terms.shape[1], 1)).squeeze(2)
        return radii, eta

    def certified_radius(self, inputs: dict[str, Tensor], labels: Tensor, targets: tuple[str, ...]) -> Tensor:
        """r_S(x) per sample for a perturbation of `targets`; 0 if misclassified."""
        return self.certify(inputs, labels, [tuple(targets)])[0][tuple(targets)]

    def vulnerability(self, inputs: dict[str, Tensor], labels: Tensor) -> Tensor:
        """η^(m) per sample, N×M."""
        return self.certify(inputs, labels, [])[1]


def _accuracy(logits: Tensor, labels: Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean())


@register_model("jt", "JT: joint training, late fusion (concatenated features, linear head), cross-entropy")
class JointTraining(LateFusion):
    pass


@register_model("ojt", "OJT: orthonormal per-modality heads + integration weights a, cross-entropy only")
class OrthogonalJointTraining(LateFusion):
    Options = OrthogonalOptions
    options: OrthogonalOptions
    orthogonal = True
    trainable_a = True


@register_model(
    "crmt-jt", "CRMT-JT: orthonormal heads, step 1 CE + ρ·margin L1, step 2 a maximises the certified bound"
)
class CRMT(OrthogonalJointTraining):
    Options = CRMTOptions
    options: CRMTOptions

    def __init__(self, specs: tuple[ModalitySpec, ...], options: CRMTOptions, num_classes: int = 10) -> None:
        super().__init__(specs, options, num_classes)
        self.step = 1

    # ------------------------------------------------------------------ schedule

    @classmethod
    def phases(cls, options: ModelOptions, train: OptimConfig) -> tuple[Phase, ...]:
        """`rounds` × (step 1: `train.epochs` of CE + ρ·L1 on every parameter; step 2:
        `step2_epochs` of L2 on `a` alone at step2_lr_scale × the rate with step2_weight_decay,
        the network's group at rate 0, BatchNorm frozen, τ̃ estimated first). a's optimizer state
        restarts at each switch, as a fresh step-2 optimizer would."""
        assert isinstance(options, CRMTOptions)
        o = options
        step1 = Phase("step1", train.epochs, settings={"step": 1}, reset=("a",), craft=cls.step1_craft(o))
        step2 = Phase(
            "step2",
            o.step2_epochs,
            settings={"step": 2},
            rates={"net": Rate(0.0), "a": Rate(o.step2_lr_scale, o.step2_weight_decay)},
            reset=("a",),
            begin="estimate_lipschitz",
        )
        return join_phases((step1, step2) * o.rounds)  # a step of no epochs never switches

    @classmethod
    def plan(cls, options: ModelOptions, train: OptimConfig, classifier: OptimConfig) -> Plan:
        stage = ModelStage(
            "representation", train, cls.phases(options, train), groups="param_groups", after="estimate_lipschitz"
        )
        return Plan((stage,))

    @classmethod
    def step1_craft(cls, options: CRMTOptions) -> Craft | None:
        """Adversarial examples for step 1 (CRMT-AT); none for the others."""
        return None

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """The step-2 split: `a` alone, the rest of the network."""
        return {"net": [p for n, p in self.named_parameters() if n != "a"], "a": [self.a]}

    def train(self, mode: bool = True) -> CRMT:
        """In step 2 the encoders stay in eval mode (BatchNorm statistics frozen) even in training."""
        super().train(mode)
        if mode and self.step == 2:
            self.encoders.eval()
            self.heads.eval()
        return self

    # ------------------------------------------------------------------ losses

    def step1_inputs(self, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor, Tensor | None, float]:
        """(inputs, labels, second labels, λ) of step 1; mixup overrides this."""
        return batch, batch["label"], None, 1.0

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        if self.step == 2:
            return self.step2_loss(batch)
        inputs, y, y2, lam = self.step1_inputs(batch)
        scores = self.scores(inputs)
        logits = self.fuse(scores)
        stacked = torch.stack([scores[n] for n in self.names], 1)
        ce = F.cross_entropy(logits, y)
        floor = self.options.margin_floor
        margin = margin_regulariser(stacked, y, floor).mean()
        if y2 is not None:
            ce = lam * ce + (1 - lam) * F.cross_entropy(logits, y2)
            margin = lam * margin + (1 - lam) * margin_regulariser(stacked, y2, floor).mean()
        loss = ce + self.options.rho * margin
        return loss, {
            "step": 1.0,
            "ce": float(ce.detach()),
            "margin_l1": float(margin.detach()),
            "train_accuracy": _accuracy(logits, batch["label"]),
        }

    def step2_loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """L2 = −mean r(x), eq. 10 with j the runner-up; only `a` carries a gradient."""
        labels = batch["label"]
        with torch.no_grad():
            scores = self.scores(batch)
        logits = self.fuse(scores, bias=self.bias.detach())
        numer, terms = bound_matrix(logits, labels, self.a, self.tau)
        j = runner_up(logits.detach(), labels).view(-1, 1)
        denom = terms.pow(2).sum(1).sqrt().gather(1, j).squeeze(1)
        bound = numer.gather(1, j).squeeze(1) / denom.clamp_min(1e-12)
        loss = -bound.mean()
        return loss, {
            "step": 2.0,
            "certified_bound": float(bound.detach().mean()),
            "train_accuracy": _accuracy(logits, labels),
        }


@register_model("crmt-at", "CRMT-AT: CRMT with step 1 on joint L2-PGD adversarial examples (true L2 projection)")
class CRMTAdversarial(CRMT):
    Options = CRMTATOptions
    options: CRMTATOptions

    @classmethod
    def step1_craft(cls, options: CRMTOptions) -> Craft | None:
        """Joint L2-PGD on every modality, against the model's own logits, in eval mode."""
        assert isinstance(options, CRMTATOptions)
        o = options
        alpha = 2.5 * o.at_eps / o.at_steps if o.at_alpha is None else o.at_alpha
        params = {"eps": o.at_eps, "alpha": alpha, "steps": o.at_steps, "random_start": o.at_random_start}
        return Craft("pgd_l2", params)


@register_model("crmt-mix", "CRMT-Mix: CRMT with step 1 on mixup batches (λ ~ Beta(α, α))")
class CRMTMixup(CRMT):
    Options = CRMTMixOptions
    options: CRMTMixOptions

    def step1_inputs(self, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor, Tensor | None, float]:
        """Mixup (Zhang et al. 2018): one λ and one permutation for every modality of the batch,
        drawn from the global RNG the run seeds (the public code drew λ from unseeded numpy)."""
        a = torch.tensor(float(self.options.mix_alpha))
        lam = float(torch.distributions.Beta(a, a).sample())
        labels = batch["label"]
        perm = torch.randperm(len(labels), device=labels.device)
        mixed = {n: lam * batch[n] + (1 - lam) * batch[n][perm] for n in self.names}
        return mixed, labels, labels[perm], lam
