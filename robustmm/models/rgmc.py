"""RGMC: GMC with an odd-one-out network and a robust fusion (seed 000 §4.1.3, eq. 4.7).

During training each sample gets one of M+1 labels: the modality that is perturbed, or "none"
(probability `clean_prob`). The chosen modality is replaced by its FGSM example (ε = `fgsm_eps`),
computed with the registered `fgsm` attack either against a frozen, already trained GMC +
classifier (`perturb_against: frozen`, the reference pipeline the plan trains first; the
cross-entropy of its classifier on the true label) or against the current model (`current`: the
step that most increases the current L_GMC, which needs no labels). The odd-one-out network o
reads the per-modality latents of that batch and is trained with cross-entropy on its LOGITS
(the public rgmc code applied BCE-with-logits to softmax outputs). Loss: L_GMC(clean batch) + λ_o · CE(o(z̃), label).

Fusion, with p = softmax(o(z)) of shape N×(M+1) and p_{M+1} the "none" column:
z_out = z_{1:M} · p_{M+1} + Σ_m z_m · Σ_{j≤M, j≠m} p_j, each weight an (N, 1) column broadcast
over the latent axis (the rgmc code reshaped with `.view` where a transpose was needed).
`gating: argmax` is the thesis' future-work variant: the joint latent when o says "none", else
the mean of the other modalities' latents. `two_phase` trains L_GMC alone for the first
`phase_split` of the epochs, then o alone on frozen encoders (the thesis' other variant).
With a modality missing the latent is the mean of the present modalities' latents, as in GMC.

A detector can mask gradients: an attack through a saturated softmax sees almost no gradient
from o. `attack_variants` offers the attack with o's output detached (treated as constant), so
the evaluation reports both numbers, `rgmc` (gradients through o) and `rgmc[o-detached]`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from robustmm.config import OptimConfig
from robustmm.data.base import ModalitySpec
from robustmm.errors import ConfigError
from robustmm.models.base import ModelOptions, register_model
from robustmm.models.encoders import mlp
from robustmm.models.gmc import GMC, GMCOptions
from robustmm.models.losses import gmc_contrastive
from robustmm.models.plan import ClassifierStage, Craft, ModelStage, Phase, Plan, Reference

PERTURB_AGAINST = ("frozen", "current")
GATINGS = ("soft", "argmax")


@dataclass(frozen=True)
class RGMCOptions(GMCOptions):
    odd_weight: float = 4.0
    fgsm_eps: float = 0.1
    clean_prob: float | None = None
    perturb_against: str = "frozen"
    reference_epochs: int | None = None
    reference_classifier_epochs: int | None = None
    odd_hidden: int = 128
    gating: str = "soft"
    two_phase: bool = False
    phase_split: float = 0.5

    def check(self, specs: tuple[ModalitySpec, ...]) -> None:
        super().check(specs)
        if self.odd_weight < 0:
            raise ConfigError(f"model.odd_weight must be ≥ 0, got {self.odd_weight}")
        if not self.fgsm_eps > 0:
            raise ConfigError(f"model.fgsm_eps must be > 0, got {self.fgsm_eps}")
        if self.clean_prob is not None and not 0 <= self.clean_prob < 1:
            raise ConfigError(f"model.clean_prob must be in [0, 1) or null (1/(M+1)), got {self.clean_prob}")
        if self.perturb_against not in PERTURB_AGAINST:
            raise ConfigError(
                f"model.perturb_against {self.perturb_against!r} unknown; use one of {', '.join(PERTURB_AGAINST)}"
            )
        if self.gating not in GATINGS:
            raise ConfigError(f"model.gating {self.gating!r} unknown; use one of {', '.join(GATINGS)}")
        if not 0 < self.phase_split < 1:
            raise ConfigError(f"model.phase_split must be in (0, 1), got {self.phase_split}")
        for key in ("reference_epochs", "reference_classifier_epochs", "odd_hidden"):
            value = getattr(self, key)
            if value is not None and value < (1 if key == "odd_hidden" else 0):
                raise ConfigError(f"model.{key} must be a non-negative integer, got {value!r}")


def fuse(joint: Tensor, unimodal: list[Tensor], p: Tensor) -> Tensor:
    """z_out = z_{1:M}·p_{M+1} + Σ_m z_m·Σ_{j≠m} p_j; latents N×D, p N×(M+1) (rows sum to 1)."""
    m = len(unimodal)
    if p.shape != (joint.shape[0], m + 1):
        raise ValueError(f"odd-one-out probabilities of shape {tuple(p.shape)}; expected ({joint.shape[0]}, {m + 1})")
    perturbed_any = p[:, :m].sum(dim=1, keepdim=True)
    out = joint * p[:, m:]
    for k, z in enumerate(unimodal):
        out = out + z * (perturbed_any - p[:, k : k + 1])
    return out


def argmax_gate(joint: Tensor, unimodal: list[Tensor], p: Tensor) -> Tensor:
    """The joint latent where o says "none", else the mean of the other modalities' latents."""
    m = len(unimodal)
    k = p.argmax(dim=1, keepdim=True)
    none = (k == m).to(joint.dtype)
    out = joint * none
    for j, z in enumerate(unimodal):
        out = out + z * ((1 - none) * (k != j).to(z.dtype) / (m - 1))
    return out


@register_model("rgmc", "RGMC: GMC + odd-one-out network trained on FGSM examples, robust fusion of latents")
class RGMC(GMC):
    Options = RGMCOptions
    options: RGMCOptions

    def __init__(self, specs: tuple[ModalitySpec, ...], options: RGMCOptions) -> None:
        super().__init__(specs, options)
        o = options
        m = len(specs)
        self.odd = mlp(m * o.latent_dim, (o.odd_hidden,), m + 1, o.activation)
        self.clean_prob = 1.0 / (m + 1) if o.clean_prob is None else o.clean_prob
        self.phase = 0  # 0: joint training; 1, 2: the two phases of `two_phase` (set by the plan)
        self.detach_odd = False

    # ------------------------------------------------------------------ training

    @classmethod
    def plan(cls, options: ModelOptions, train: OptimConfig, classifier: OptimConfig) -> Plan:
        """The FGSM examples come from the shared attack registry (`fgsm`, every modality at once:
        one gradient at the clean point gives each modality's step), against the frozen reference
        pipeline's cross-entropy (`frozen`, trained first by this plan's `reference`) or the
        current L_GMC (`current`); `loss` keeps, per sample, only the modality its odd-one-out
        label names. `two_phase`: L_GMC alone for the first `phase_split` of the epochs, then o
        alone on frozen encoders."""
        assert isinstance(options, RGMCOptions)
        o = options
        frozen = o.perturb_against == "frozen"
        craft = Craft(
            "fgsm",
            {"eps": o.fgsm_eps},
            against="reference" if frozen else "self",
            loss=None if frozen else "contrastive_objective",
            eval_mode=False,
            into="adversarial",
        )
        if o.two_phase:
            first = min(train.epochs, max(1, round(o.phase_split * train.epochs)))
            phases = (
                Phase("contrastive", first, settings={"phase": 1}),
                Phase("odd", train.epochs - first, settings={"phase": 2}, craft=craft),
            )
        else:
            phases = (Phase("joint", train.epochs, settings={"phase": 0}, craft=craft),)
        plan = Plan((ModelStage("representation", train, phases), ClassifierStage("classifier", classifier)))
        if not frozen:
            return plan
        keep = ("latent_dim", "activation", "common_dim", "tau", "head_hidden")
        ref_options = {k: getattr(o, k) for k in keep}
        ref_train = train if o.reference_epochs is None else dataclasses.replace(train, epochs=o.reference_epochs)
        ref_classifier = classifier
        if o.reference_classifier_epochs is not None:
            ref_classifier = dataclasses.replace(classifier, epochs=o.reference_classifier_epochs)
        ref_plan = GMC.plan(GMCOptions(**ref_options), ref_train, ref_classifier)
        return dataclasses.replace(plan, reference=Reference("gmc", ref_options, ref_plan))

    def odd_labels(self, n: int, device: torch.device) -> Tensor:
        """Per sample: the index of the perturbed modality, or M for "none" (prob. clean_prob)."""
        m = len(self.names)
        clean = torch.rand(n, device=device) < self.clean_prob
        which = torch.randint(m, (n,), device=device)
        return torch.where(clean, torch.full_like(which, m), which)

    def pick(self, clean: dict[str, Tensor], adversarial: dict[str, Tensor], which: Tensor) -> dict[str, Tensor]:
        """Per sample, the adversarial copy of the modality its label names; "none" stays clean."""
        out = {}
        for k, name in enumerate(self.names):
            mask = (which == k).view(-1, *([1] * (clean[name].dim() - 1)))
            out[name] = torch.where(mask, adversarial[name].detach(), clean[name])
        return out

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        clean = {n: batch[n] for n in self.names}
        n = len(next(iter(clean.values())))
        metrics: dict[str, Any] = {}
        loss = None
        if self.phase != 2:
            joint, unimodal = self.latents(clean)
            loss = gmc_contrastive(joint, unimodal, self.options.tau)
            metrics["contrastive"] = float(loss.detach())
        if self.phase != 1:
            if "adversarial" not in batch:
                raise ConfigError("RGMC's loss needs the batch's FGSM examples ('adversarial'); train it by its plan")
            which = self.odd_labels(n, next(iter(clean.values())).device)
            perturbed = self.pick(clean, batch["adversarial"], which)
            with torch.no_grad() if self.phase == 2 else contextlib.nullcontext():
                latents = [self.modality_latent(name, perturbed[name]) for name in self.names]
            logits = self.odd(torch.cat(latents, dim=1))
            odd = F.cross_entropy(logits, which)
            metrics["odd"] = float(odd.detach())
            metrics["odd_accuracy"] = float((logits.argmax(1) == which).float().mean())
            loss = self.options.odd_weight * odd if loss is None else loss + self.options.odd_weight * odd
        assert loss is not None
        return loss, metrics

    # ------------------------------------------------------------------ encoding

    def odd_probabilities(self, unimodal: list[Tensor]) -> Tensor:
        p = F.softmax(self.odd(torch.cat(unimodal, dim=1)), dim=1)
        return p.detach() if self.detach_odd else p

    def encode(self, inputs: dict[str, Tensor], present: tuple[str, ...] | None = None) -> Tensor:
        names = self.present_names(present)
        if len(names) < len(self.names):
            return super().encode(inputs, names)
        joint, unimodal = self.latents(inputs)
        p = self.odd_probabilities(unimodal)
        gate = fuse if self.options.gating == "soft" else argmax_gate
        return gate(joint, unimodal, p)

    def attack_variants(self) -> dict[str, Callable[[], contextlib.AbstractContextManager[None]]]:
        return {"o-detached": self._odd_detached}

    @contextlib.contextmanager
    def _odd_detached(self) -> Iterator[None]:
        self.detach_odd = True
        try:
            yield
        finally:
            self.detach_odd = False
