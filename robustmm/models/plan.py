"""A model's training plan: the ordered stages one run of it trains, as plain data.

Every model says how it is trained in one place, its `plan` classmethod, and one generic runner
(`robustmm.train.run_plan`) executes any plan. Progress totals, a sweep trial's budget (ASHA's
`max_t`), checkpoints and resume all read the same plan, so they cannot disagree. A plan names
the model's methods and attributes by string, so it is built from the options alone (no model,
no data): a sweep counts a trial's epochs for every corner of its space without building one.

Lifecycle — what the runner does with a plan, in this order (compare Optuna's `BaseSampler`):

1. `plan = Model.plan(options, train, classifier)` (`plan_for(name, options, ...)` by name).
2. `plan.reference` set: the reference pipeline is built (`reference.model`, `reference.options`)
   and trained by ITS plan first, from the run seed + `reference.seed_offset` inside a forked RNG,
   so the model's own random stream is the same with or without it. Its stages report as
   "reference" and "reference-classifier"; its frozen chain is what `Craft(against="reference")`
   attacks. A checkpoint taken later carries its weights, so a resumed run does not retrain it.
3. Each stage in order. A `ModelStage` trains the model: one optimizer (`stage.cfg`) over the
   parameter groups `stage.groups` names (the model method returning {group: parameters}; None:
   one group "all"), one shuffling generator seeded from the run seed. Its phases run in order;
   for every epoch of a phase:
     a. `phase.settings` are set on the model (attribute → value; e.g. CRMT's `step`, RGMC's
        `phase`), the groups' rates follow `phase.rates` (lr = stage lr × scale, weight decay);
        when the phase truly begins (not when a resumed run lands inside it) the optimizer
        state of the groups in `phase.reset` restarts and `phase.begin` (a model method) is
        called with the training split;
     b. each batch (inputs + "label"): when `phase.craft` is set, adversarial examples are
        crafted with the shared attack registry (`Craft`), then `model.<phase.loss>(batch)`
        gives (loss, metrics); backward; step;
     c. the epoch's mean metrics are reported as (stage name, epoch within the stage), with a
        checkpoint keyed by (stage index, epoch) when one is due.
   After its last epoch, `stage.after` (a model method) is called with the training split.
   A `ClassifierStage` freezes the model, encodes the training split once (through the model
   method `stage.view` when set, else the clean inputs), and trains a downstream classifier of
   `stage.hidden` widths on those latents with cross-entropy.
4. A plan without a classifier stage is its own classifier (the model's logits, `OwnHead`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from robustmm.config import OptimConfig

CLASSIFIER_HIDDEN = (256, 128)
"""Hidden widths of the downstream classifier (SPEC §1)."""

REFERENCE_STAGE_NAMES = {"representation": "reference", "classifier": "reference-classifier"}


@dataclass(frozen=True)
class Rate:
    """A parameter group's rate in a phase: the stage's lr × `lr_scale`, and `weight_decay`
    (None: the stage's)."""

    lr_scale: float = 1.0
    weight_decay: float | None = None


@dataclass(frozen=True)
class Craft:
    """Adversarial examples for each training batch, made by the registered attack `attack`
    with `params` on `targets` (None: every modality, one joint perturbation).

    `against`: "self" attacks the model's own logits (`model.encode`, an own-head model) or,
    with `loss` (a model method: inputs -> the summed objective to ascend), that objective;
    "reference" attacks the plan's frozen reference pipeline with its cross-entropy on the
    labels. `eval_mode`: craft with the model in eval mode (BatchNorm statistics untouched).
    `into`: "inputs" replaces the batch's inputs; "adversarial" adds them to the batch under
    that key (a dict modality -> tensor), beside the clean inputs. Random starts come from one
    generator per (run seed, attack, epoch, step), so a resumed run draws the same ones."""

    attack: str
    params: Mapping[str, float] = field(default_factory=dict)
    targets: tuple[str, ...] | None = None
    against: str = "self"
    loss: str | None = None
    eval_mode: bool = True
    into: str = "inputs"


@dataclass(frozen=True)
class Phase:
    """`epochs` epochs of one loss (`model.<loss>(batch)`) with fixed settings; see the module
    docstring for when `settings`, `rates`, `reset`, `begin` and `craft` apply."""

    name: str
    epochs: int
    loss: str = "loss"
    settings: Mapping[str, Any] = field(default_factory=dict)
    rates: Mapping[str, Rate] = field(default_factory=dict)
    reset: tuple[str, ...] = ()
    begin: str | None = None
    craft: Craft | None = None


@dataclass(frozen=True)
class ModelStage:
    """Trains the model through its phases with one optimizer and one shuffling order."""

    name: str
    cfg: OptimConfig
    phases: tuple[Phase, ...]
    groups: str | None = None
    after: str | None = None

    @property
    def epochs(self) -> int:
        return sum(p.epochs for p in self.phases)

    def phase_at(self, epoch: int) -> tuple[int, Phase]:
        """(index, phase) of the stage's 1-based `epoch`."""
        end = 0
        for i, phase in enumerate(self.phases):
            end += phase.epochs
            if epoch <= end:
                return i, phase
        raise ValueError(f"epoch {epoch} is past the stage's {self.epochs} epochs")

    def phase_starts(self, epoch: int) -> bool:
        """Whether `epoch` is the first epoch of its phase."""
        index, _ = self.phase_at(epoch)
        return epoch == 1 + sum(p.epochs for p in self.phases[:index])


@dataclass(frozen=True)
class ClassifierStage:
    """Trains the downstream classifier (`hidden` widths; () is one linear layer) on latents of
    the frozen model, encoded once from the training inputs (`view`: a model method that gives
    other inputs, drawing from the generator it is handed)."""

    name: str
    cfg: OptimConfig
    hidden: tuple[int, ...] = CLASSIFIER_HIDDEN
    view: str | None = None

    @property
    def epochs(self) -> int:
        return self.cfg.epochs


Stage = ModelStage | ClassifierStage


@dataclass(frozen=True)
class Reference:
    """A pipeline trained before the model, by its own plan, from run seed + `seed_offset`."""

    model: str
    options: Mapping[str, Any]
    plan: Plan
    seed_offset: int = 7919


@dataclass(frozen=True)
class Plan:
    stages: tuple[Stage, ...]
    reference: Reference | None = None

    @property
    def own_head(self) -> bool:
        """No classifier stage: the model's logits are the prediction."""
        return not any(isinstance(s, ClassifierStage) for s in self.stages)

    def totals(self) -> list[tuple[str, int]]:
        """(reported stage name, epochs) of every stage the run reports, in order, the reference's
        first; stages with no epochs are left out (they report nothing)."""
        out: list[tuple[str, int]] = []
        if self.reference is not None:
            out += [(REFERENCE_STAGE_NAMES.get(n, n), e) for n, e in self.reference.plan.totals()]
        return out + [(s.name, s.epochs) for s in self.stages if s.epochs > 0]

    @property
    def total_epochs(self) -> int:
        """Every epoch report one run of the plan makes."""
        return sum(e for _, e in self.totals())


def join_phases(phases: Sequence[Phase]) -> tuple[Phase, ...]:
    """The phases without empty ones, neighbours of the same name joined into one: a schedule
    that repeats (CRMT's rounds) switches only where the phase really changes."""
    out: list[Phase] = []
    for phase in phases:
        if phase.epochs == 0:
            continue
        if out and out[-1].name == phase.name:
            out[-1] = dataclasses.replace(out[-1], epochs=out[-1].epochs + phase.epochs)
        else:
            out.append(phase)
    return tuple(out)


def two_stage(train: OptimConfig, classifier: OptimConfig, **classifier_stage: Any) -> Plan:
    """The plan of most models: the representation (one phase of `train.epochs` of `loss`), then
    the classifier on its frozen latents (`classifier_stage`: its hidden widths, view)."""
    return Plan(
        (
            ModelStage("representation", train, (Phase("train", train.epochs),)),
            ClassifierStage("classifier", classifier, **classifier_stage),
        )
    )
