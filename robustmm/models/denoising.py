"""Options of the models that reconstruct their input, and the training-time corruption.

`ReconOptions`: the per-modality weights λ_m of Σ_m λ_m·err_m and how err_m reduces a sample's
squared errors — "sum" (summed over the sample's elements, then averaged over the batch: the
thesis' Σ_i (x̂_i − x_i)², seed 000 eq. 4.1–4.6) or "mean" (averaged over elements too, so a
784-pixel image and a 200-value trajectory weigh alike).

`DenoisingOptions`: Gaussian noise σ on a copy of the input, on one modality per sample or on
all, on the modalities `noise_modalities` only (None: every one), with a share `clean_prob` of
the samples left clean. `corrupt` draws it; the reconstruction target stays the clean input.

The AE baselines (autoencoders.py) and GMCWD / DGMC (gmc.py) extend these dataclasses; GMCWD
changes two defaults with `defaults={...}` (`robustmm.options.Options`) rather than declaring the
fields again, and DGMC inherits GMCWD's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from robustmm.data.base import ModalitySpec
from robustmm.errors import ConfigError
from robustmm.models.base import ModelOptions

NOISE_MODES = ("one", "all")
RECON_REDUCTIONS = ("sum", "mean")


@dataclass(frozen=True)
class ReconOptions(ModelOptions):
    """λ_m of the reconstruction loss (None: 1/M each) and its reduction over a sample's elements."""

    recon_weights: dict[str, float] | None = None
    recon_reduction: str = "mean"

    def check(self, specs: tuple[ModalitySpec, ...]) -> None:
        super().check(specs)
        names = tuple(s.name for s in specs)
        unknown = sorted(set(self.recon_weights or {}) - set(names))
        if unknown:
            raise ConfigError(f"model.recon_weights names modality {unknown[0]!r}; the dataset has {', '.join(names)}")
        for m, w in (self.recon_weights or {}).items():
            if w < 0:
                raise ConfigError(f"model.recon_weights.{m} must be a number ≥ 0, got {w!r}")
        if self.recon_reduction not in RECON_REDUCTIONS:
            raise ConfigError(
                f"model.recon_reduction {self.recon_reduction!r} unknown; use 'sum' (squared error summed "
                f"per sample, the thesis) or 'mean' (averaged over elements)"
            )

    def weights(self, names: Sequence[str]) -> dict[str, float]:
        """λ_m of each of the checked modalities `names`: 1/M each without `recon_weights`, else
        the given weight (0 for a modality it leaves out)."""
        if self.recon_weights is None:
            return {m: 1.0 / len(names) for m in names}
        return {m: float(self.recon_weights.get(m, 0.0)) for m in names}


@dataclass(frozen=True)
class DenoisingOptions(ReconOptions):
    """Gaussian noise σ on a copy of the input: one modality per sample or all, on the
    `noise_modalities` (None: all), a share `clean_prob` of the samples left clean."""

    noise_sigma: float = 0.5
    noise_mode: str = "one"
    clean_prob: float = 0.0
    noise_modalities: tuple[str, ...] | None = None

    def check(self, specs: tuple[ModalitySpec, ...]) -> None:
        super().check(specs)
        if self.noise_sigma < 0:
            raise ConfigError(f"model.noise_sigma must be ≥ 0 (0 turns denoising off), got {self.noise_sigma}")
        if self.noise_mode not in NOISE_MODES:
            raise ConfigError(f"model.noise_mode {self.noise_mode!r} unknown; use one of {', '.join(NOISE_MODES)}")
        if not 0 <= self.clean_prob <= 1:
            raise ConfigError(
                f"model.clean_prob must be in [0, 1] (the share of training samples left clean), "
                f"got {self.clean_prob!r}"
            )
        self._check_noise_modalities(tuple(s.name for s in specs))

    def _check_noise_modalities(self, names: tuple[str, ...]) -> None:
        chosen = self.noise_modalities
        if chosen is not None and not chosen:
            raise ConfigError(
                f"model.noise_modalities must be a non-empty list of modalities (or null: all), got {list(chosen)!r}"
            )
        unknown = [m for m in chosen or () if m not in names]
        if unknown:
            raise ConfigError(
                f"model.noise_modalities names modality {unknown[0]!r}; the dataset has {', '.join(names)}"
            )

    def noisy_names(self, names: Sequence[str]) -> tuple[str, ...]:
        """The modalities that may get noise, in the dataset's order."""
        chosen = self.noise_modalities
        return tuple(names) if chosen is None else tuple(n for n in names if n in chosen)

    def corrupt(
        self,
        inputs: dict[str, Tensor],
        ranges: dict[str, tuple[float, float]],
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """A NEW dict with the training noise added, clamped to each modality's value range (the
        originals stay clean: they are the denoising targets).

        Per sample: clean with probability `clean_prob`; otherwise noise on one of the
        `noise_modalities` chosen uniformly ("one", seed 000 §4.1.2) or on all of them ("all").
        Draws come from `generator` (on the inputs' device) or, without one, from the global torch
        RNG, which the training run seeds and its checkpoints save. With `clean_prob` 0 no clean
        mask is drawn, so the draws are those of noise on every sample.
        """
        if self.noise_sigma == 0 or self.clean_prob == 1:
            return dict(inputs)
        names = list(inputs)
        noisy = self.noisy_names(names)
        ref = next(iter(inputs.values()))
        n, device = len(ref), ref.device
        keep = None
        if self.noise_mode == "one":
            which = torch.randint(len(noisy), (n,), device=device, generator=generator)
        if self.clean_prob > 0:
            keep = torch.rand(n, device=device, generator=generator) < self.clean_prob
        out = {}
        for name in names:
            x = inputs[name]
            if name not in noisy:
                out[name] = x
                continue
            noise = self.noise_sigma * torch.randn(x.shape, device=device, dtype=x.dtype, generator=generator)
            hit = torch.ones(n, dtype=torch.bool, device=device)
            if self.noise_mode == "one":
                hit = which == noisy.index(name)
            if keep is not None:
                hit = hit & ~keep
            if self.noise_mode == "one" or keep is not None:
                noise = noise * hit.view(-1, *([1] * (x.dim() - 1)))
            lo, hi = ranges[name]
            out[name] = (x + noise).clamp(lo, hi)
        return out
