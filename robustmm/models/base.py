"""The model contract and the model registry.

A representation model trains without labels through `loss(batch)` and, frozen, maps inputs
(any non-empty subset of its modalities) to a latent through `encode(inputs, present)`; how it
is trained — its stages, phases, rates, adversarial examples, a reference pipeline — is its
`plan` (robustmm/models/plan.py), which one runner executes for every model.
Options are a dataclass per model: unknown keys are an error, unset keys take the defaults.

A model with `own_head = True` (the CRMT family) is supervised: its `loss` uses the batch's
labels, `encode` returns class logits, and no downstream classifier is trained for it — its own
head is the classifier, through the same Chain, evaluator and tables as every other model. A
model with `certifies = True` also gives a certified L2 radius per sample (`certified_radius`)
and per-modality vulnerability indicators (`vulnerability`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from robustmm.config import OptimConfig
from robustmm.data.base import ModalitySpec
from robustmm.errors import ConfigError
from robustmm.models.plan import CLASSIFIER_HIDDEN, Plan, two_stage
from robustmm.options import Options, parse
from robustmm.registry import Registry


@dataclass(frozen=True)
class ModelOptions(Options):
    """Options every model accepts; model families extend this dataclass (and change inherited
    defaults with `defaults={...}`, see `robustmm.options.Options`)."""

    latent_dim: int = 64
    activation: str = "silu"

    def check(self, specs: tuple[ModalitySpec, ...]) -> None:
        if self.latent_dim < 1:
            raise ConfigError(f"model.latent_dim must be ≥ 1, got {self.latent_dim}")


class RepresentationModel(nn.Module, ABC):
    """Base class: subclasses set `Options` and implement `loss` and `encode`."""

    Options: ClassVar[type[ModelOptions]] = ModelOptions
    summary: ClassVar[str] = ""
    own_head: ClassVar[bool] = False
    certifies: ClassVar[bool] = False

    def __init__(self, specs: tuple[ModalitySpec, ...], options: ModelOptions) -> None:
        super().__init__()
        if len(specs) < 2:
            raise ConfigError(f"{type(self).__name__} needs at least 2 modalities; the dataset gives {len(specs)}")
        options.check(specs)
        self.specs = tuple(specs)
        self.names = tuple(s.name for s in specs)
        self.options = options

    @property
    def latent_dim(self) -> int:
        return self.options.latent_dim

    @abstractmethod
    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Training loss on a batch of complete observations, plus scalar metrics to report."""

    @abstractmethod
    def encode(self, inputs: dict[str, Tensor], present: tuple[str, ...] | None = None) -> Tensor:
        """Latent of the given inputs, using only the `present` modalities (None: all)."""

    @classmethod
    def plan(cls, options: ModelOptions, train: OptimConfig, classifier: OptimConfig) -> Plan:
        """How one run trains this model (robustmm/models/plan.py): by default `train.epochs` of
        `loss`, then the downstream classifier on the frozen latents. Models with a schedule of
        their own (CRMT's steps, RGMC's reference and phases, the raw probe's classifier only)
        return theirs; a classmethod, so a plan is known before any model is built."""
        return two_stage(train, classifier)

    def attack_variants(self) -> dict[str, Callable[[], AbstractContextManager[None]]]:
        """Extra ways to attack this model, name -> a context in which the gradients of the
        chain follow that variant (RGMC: its detector's output detached). The evaluator runs
        every gradient attack once more per variant and labels those rows `model[variant]`."""
        return {}

    def present_names(self, present: tuple[str, ...] | None) -> tuple[str, ...]:
        if present is None:
            return self.names
        unknown = [p for p in present if p not in self.names]
        if unknown or not present:
            raise ConfigError(f"cannot encode with modalities {present!r}; choose a non-empty subset of {self.names}")
        return tuple(n for n in self.names if n in present)


def variant_label(model: str, variant: str) -> str:
    """The `model` column of the rows of an attack variant, e.g. ``rgmc[o-detached]``."""
    return f"{model}[{variant}]"


def base_label(label: str) -> str:
    """``rgmc[o-detached]`` -> ``rgmc``; a plain model name is returned as it is."""
    return label.split("[", 1)[0]


@dataclass(frozen=True)
class ModelEntry:
    cls: type[RepresentationModel]
    summary: str


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(name: str, summary: str):
    def deco(cls: type[RepresentationModel]) -> type[RepresentationModel]:
        MODELS.add(name, ModelEntry(cls, summary))
        return cls

    return deco


def make_options(cls: type[RepresentationModel], model_name: str, options: Mapping[str, Any]) -> ModelOptions:
    """`cls`'s options from a mapping, typed; their ranges are checked against the dataset's
    modalities when the model is built (`check(specs)`)."""
    return parse(cls.Options, options, "model", owner=f"model {model_name!r}", noun="option", check=False)


def build_model(
    name: str, specs: tuple[ModalitySpec, ...], options: Mapping[str, Any] | None = None, *, num_classes: int = 10
) -> RepresentationModel:
    """The model `name` on these modalities; `num_classes` sizes the head of an own-head model."""
    entry = MODELS.get(name)
    opts = make_options(entry.cls, name, options or {})
    if entry.cls.own_head:
        return entry.cls(tuple(specs), opts, num_classes=num_classes)  # type: ignore[call-arg]
    return entry.cls(tuple(specs), opts)


def plan_for(name: str, options: Mapping[str, Any], train: OptimConfig, classifier: OptimConfig) -> Plan:
    """The training plan of model `name` with these options and budgets (no model is built)."""
    cls = MODELS.get(name).cls
    return cls.plan(make_options(cls, name, options), train, classifier)


def model_defaults(name: str) -> dict[str, Any]:
    return dataclasses.asdict(MODELS.get(name).cls.Options())


class Classifier(nn.Module):
    """The downstream classifier on frozen latents: MLP latent→256→128→classes, ReLU (SPEC §1);
    `hidden=()` makes it one linear layer."""

    def __init__(self, latent_dim: int, num_classes: int, hidden: tuple[int, ...] = CLASSIFIER_HIDDEN) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = latent_dim
        for width in hidden:
            layers += [nn.Linear(d, width), nn.ReLU()]
            d = width
        layers.append(nn.Linear(d, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class OwnHead(nn.Identity):
    """The "classifier" of an own-head model: its logits pass through unchanged."""


class Chain(nn.Module):
    """Frozen representation model + classifier as one differentiable function of the inputs:
    what every attack differentiates through."""

    def __init__(self, model: RepresentationModel, classifier: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.classifier = classifier

    def forward(self, inputs: dict[str, Tensor], present: tuple[str, ...] | None = None) -> Tensor:
        return self.classifier(self.model.encode(inputs, present))

    @property
    def certifies(self) -> bool:
        return self.model.certifies and isinstance(self.classifier, OwnHead)

    def certified_radius(self, inputs: dict[str, Tensor], labels: Tensor, targets: tuple[str, ...]) -> Tensor:
        """Per-sample certified L2 radius of a perturbation of `targets` (0 where misclassified)."""
        if not self.certifies:
            raise ConfigError(f"{type(self.model).__name__} gives no certified radius; drop the certified cells")
        return self.model.certified_radius(inputs, labels, targets)  # type: ignore[attr-defined]
