"""The model contract and the model registry.

A representation model trains without labels through `loss(batch)` and, frozen, maps inputs
(any non-empty subset of its modalities) to a latent through `encode(inputs, present)`.
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
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from robustmm.data.base import ModalitySpec, Split
from robustmm.errors import ConfigError
from robustmm.options import Options, parse
from robustmm.registry import Registry

CLASSIFIER_HIDDEN = (256, 128)
"""Hidden widths of the downstream classifier (SPEC §1)."""


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
    def stage_epochs(cls, options: ModelOptions, epochs: int) -> int:
        """How many epochs the representation stage runs when the run asks for `epochs` (CRMT:
        rounds × (step-1 + step-2 epochs)); most models run exactly `epochs`."""
        return epochs

    @classmethod
    def stage_totals(cls, options: ModelOptions, train_epochs: int, classifier_epochs: int) -> tuple[int, int]:
        """(representation, classifier) epochs a run reports: an own-head model has no classifier stage."""
        return cls.stage_epochs(options, train_epochs), 0 if cls.own_head else classifier_epochs

    def classifier_hidden(self) -> tuple[int, ...]:
        """Hidden widths of the downstream classifier trained on this model's latents (SPEC §1);
        the raw-input baseline asks for none (a linear probe) or a small layer."""
        return CLASSIFIER_HIDDEN

    def representation_epochs(self, epochs: int) -> int:
        return type(self).stage_epochs(self.options, epochs)

    def param_groups(self) -> list[dict[str, Any]]:
        """Parameter groups of the representation-stage optimizer, each {'name', 'params'}; a model
        whose steps train different parameters at different rates (CRMT's step 2) splits them."""
        return [{"name": "all", "params": list(self.parameters())}]

    def begin_epoch(self, epoch: int, epochs: int, *, train: Split | None = None, optimizer: Any | None = None) -> None:
        """Called by the training loop before each representation epoch (1-based, of `epochs` =
        `representation_epochs(...)`), with the training split and the optimizer: models whose
        loss changes over training (RGMC's two phases, CRMT's steps) switch here; most ignore it."""

    def finish_training(self, train: Split) -> None:
        """Called once after the representation stage (CRMT estimates its Lipschitz constants)."""

    def adversarial_training(self) -> AdversarialTraining | None:
        """An own-head model trained on adversarial examples (CRMT-AT) says which attack here; the
        training loop crafts them with the evaluator's attack against the model's current logits."""
        return None

    def reference_request(self) -> ReferenceRequest | None:
        """A model that trains against another, already trained pipeline (RGMC's frozen GMC +
        classifier) says which here; the training loop trains it first and calls `set_reference`."""
        return None

    def set_reference(self, chain: Chain) -> None:
        raise NotImplementedError(f"{type(self).__name__} asked for no reference pipeline")

    def attack_variants(self) -> dict[str, Callable[[], AbstractContextManager[None]]]:
        """Extra ways to attack this model, name -> a context in which the gradients of the
        chain follow that variant (RGMC: its detector's output detached). The evaluator runs
        every gradient attack once more per variant and labels those rows `model[variant]`."""
        return {}

    def classifier_training_inputs(
        self, inputs: dict[str, Tensor], generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """What the downstream classifier's training latents are encoded from: the clean training
        inputs, unless a model is configured otherwise (GMCWD's `classifier_input: noisy` returns
        its training corruption, drawn from `generator`)."""
        return inputs

    def present_names(self, present: tuple[str, ...] | None) -> tuple[str, ...]:
        if present is None:
            return self.names
        unknown = [p for p in present if p not in self.names]
        if unknown or not present:
            raise ConfigError(f"cannot encode with modalities {present!r}; choose a non-empty subset of {self.names}")
        return tuple(n for n in self.names if n in present)


@dataclass(frozen=True)
class AdversarialTraining:
    """Craft each training batch with `attack` (a registered attack name) and `params` on the
    `targets` modalities (None: all of them, one joint perturbation) before the loss sees it."""

    attack: str
    params: dict[str, float] = field(default_factory=dict)
    targets: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ReferenceRequest:
    """A pipeline to train before this model: `model` with `options`, for `epochs` representation
    and `classifier_epochs` classifier epochs (None: as many as the run's own stages)."""

    model: str
    options: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    classifier_epochs: int | None = None


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


def reported_epochs(name: str, options: Mapping[str, Any], train_epochs: int, classifier_epochs: int) -> int:
    """Epochs one run of `name` reports: its representation stage, plus the classifier stage
    unless the model is its own classifier."""
    cls = MODELS.get(name).cls
    return sum(cls.stage_totals(make_options(cls, name, options), train_epochs, classifier_epochs))


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
