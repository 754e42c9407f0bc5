"""The raw-input baseline: no representation at all, the classifier reads the inputs themselves.

`raw` is what every learned representation has to beat. Its "latent" is the chosen modalities
flattened and concatenated, so it has no parameters and no representation stage (zero epochs):
the run's classifier stage is the whole training, with the classifier's budget (classifier
epochs, learning rate, batch size) on the same train split, and the evaluator attacks it end to
end through the same Chain (the gradient reaches the inputs through the identity).

`hidden` sets the classifier's hidden widths for this model: `[]` (the default) is a linear
probe (one linear layer on the raw features), `[128]` a small MLP. A modality left out of
`modalities` is never read, so an attack on it cannot change a prediction; an absent modality
(the missing-modality cells) contributes zeros, its block of the linear probe adds nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from robustmm.config import OptimConfig
from robustmm.data.base import ModalitySpec
from robustmm.errors import ConfigError
from robustmm.models.base import RepresentationModel, register_model
from robustmm.models.plan import ClassifierStage, Plan


@dataclass(frozen=True)
class RawOptions:
    """`modalities`: the modalities the probe reads ([] = all, in the dataset's order);
    `hidden`: the classifier's hidden widths ([] = a linear probe)."""

    modalities: tuple[str, ...] = ()
    hidden: tuple[int, ...] = ()

    def check(self, specs: tuple[ModalitySpec, ...]) -> None:
        names = tuple(s.name for s in specs)
        unknown = [m for m in self.modalities if m not in names]
        if unknown or len(set(self.modalities)) != len(self.modalities):
            raise ConfigError(
                f"model.modalities {list(self.modalities)!r} must name each modality once, from {', '.join(names)};"
                " [] reads them all"
            )
        if not all(w >= 1 for w in self.hidden):
            raise ConfigError(
                f"model.hidden must be a list of layer widths ≥ 1 ([] for a linear probe, e.g. [128]); "
                f"got {self.hidden!r}"
            )


@register_model("raw", "raw-input baseline: the classifier on the flattened inputs (linear probe or small MLP)")
class RawProbe(RepresentationModel):
    Options = RawOptions  # type: ignore[assignment]
    options: RawOptions  # type: ignore[assignment]

    def __init__(self, specs: tuple[ModalitySpec, ...], options: RawOptions) -> None:
        super().__init__(specs, options)  # type: ignore[arg-type]
        chosen = options.modalities or self.names
        self.used = tuple(n for n in self.names if n in chosen)  # the dataset's order
        self.widths = {s.name: math.prod(s.shape) for s in specs}

    @property
    def latent_dim(self) -> int:
        return sum(self.widths[n] for n in self.used)

    @classmethod
    def plan(cls, options: RawOptions, train: OptimConfig, classifier: OptimConfig) -> Plan:  # type: ignore[override]
        """Nothing to learn before the classifier: its stage, of `hidden` widths, is the training."""
        return Plan((ClassifierStage("classifier", classifier, hidden=options.hidden),))

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Never trained (zero representation epochs): a constant zero, so the contract holds."""
        return torch.zeros((), device=batch["label"].device), {}

    def encode(self, inputs: dict[str, Tensor], present: tuple[str, ...] | None = None) -> Tensor:
        """The used modalities flattened and concatenated; an absent one is zeros."""
        names = self.present_names(present)
        like = inputs[names[0]]
        parts = [inputs[m].flatten(1) if m in names else like.new_zeros(len(like), self.widths[m]) for m in self.used]
        return torch.cat(parts, dim=1)
