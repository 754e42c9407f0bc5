"""GMC and GMCWD (seed 000 §3.2.2, §4.1; Poklukar et al. 2022).

GMC: per-modality encoders f_m and a joint encoder f_{1:M}, a shared projection head g onto the
unit sphere, trained with the geometric contrastive loss L_GMC. GMCWD adds a shared
re-projection head ḡ and a joint decoder f̄_{1:M}, feeds the encoders a noisy copy of the
input and reconstructs the CLEAN input from z_{1:M} (the public rgmc code reconstructed the
noisy input because it corrupted the batch in place). Its reconstruction and noise options are
`denoising.py`'s, with the thesis' summed error and half of the samples left clean by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustmm.config import OptimConfig
from robustmm.data.base import ModalitySpec
from robustmm.errors import ConfigError
from robustmm.models.base import ModelOptions, RepresentationModel, register_model
from robustmm.models.denoising import DenoisingOptions
from robustmm.models.encoders import Decoder, Encoder, JointEncoder, mlp
from robustmm.models.losses import gmc_contrastive, reconstruction_loss
from robustmm.models.plan import Plan, two_stage


def recon_ratio(recon: float, contrastive: float) -> float:
    """Weighted reconstruction term ÷ contrastive term: ≪ 1, reconstruction negligible; ≫ 1, dominant."""
    return recon / max(contrastive, 1e-12)


@dataclass(frozen=True)
class GMCOptions(ModelOptions):
    common_dim: int = 64
    tau: float = 0.1
    head_hidden: int = 512

    def check(self, specs: tuple[ModalitySpec, ...]) -> None:
        super().check(specs)
        if self.tau <= 0:
            raise ConfigError(f"model.tau must be > 0, got {self.tau}")
        if self.common_dim < 1:
            raise ConfigError(f"model.common_dim must be ≥ 1, got {self.common_dim}")


@register_model("gmc", "GMC: per-modality + joint encoders, shared head, geometric contrastive loss")
class GMC(RepresentationModel):
    Options = GMCOptions
    options: GMCOptions

    def __init__(self, specs: tuple[ModalitySpec, ...], options: GMCOptions) -> None:
        super().__init__(specs, options)
        o = options
        self.encoders = nn.ModuleDict({s.name: Encoder(s, o.common_dim, o.activation) for s in specs})
        self.joint_encoder = JointEncoder(specs, o.common_dim, o.activation)
        self.head = mlp(o.common_dim, (o.head_hidden, o.head_hidden), o.latent_dim, o.activation)
        self.ranges = {s.name: s.value_range for s in specs}

    def project(self, h: Tensor) -> Tensor:
        """g: intermediate representation -> latent on the unit sphere."""
        return F.normalize(self.head(h), dim=-1)

    def joint_latent(self, inputs: dict[str, Tensor]) -> Tensor:
        return self.project(self.joint_encoder(inputs))

    def modality_latent(self, name: str, x: Tensor) -> Tensor:
        return self.project(self.encoders[name](x))

    def latents(self, inputs: dict[str, Tensor]) -> tuple[Tensor, list[Tensor]]:
        return self.joint_latent(inputs), [self.modality_latent(n, inputs[n]) for n in self.names]

    def contrastive_objective(self, inputs: dict[str, Tensor]) -> Tensor:
        """L_GMC of these inputs: what an attack on the representation itself ascends."""
        joint, unimodal = self.latents(inputs)
        return gmc_contrastive(joint, unimodal, self.options.tau)

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        loss = self.contrastive_objective(batch)
        return loss, {"contrastive": float(loss.detach())}

    def encode(self, inputs: dict[str, Tensor], present: tuple[str, ...] | None = None) -> Tensor:
        """All modalities: the joint latent; a subset: the mean of its modalities' latents."""
        names = self.present_names(present)
        if len(names) == len(self.names):
            return self.joint_latent(inputs)
        zs = [self.modality_latent(n, inputs[n]) for n in names]
        return sum(zs[1:], zs[0]) / len(zs)


CLASSIFIER_INPUTS = ("clean", "noisy")


@dataclass(frozen=True)
class GMCWDOptions(DenoisingOptions, GMCOptions, defaults={"recon_reduction": "sum", "clean_prob": 0.5}):
    """GMC's options, the reconstruction weights and reduction, the training noise, and what the
    downstream classifier is trained on. Defaults: see `GMCWD`."""

    classifier_input: str = "clean"

    def check(self, specs: tuple[ModalitySpec, ...]) -> None:
        super().check(specs)
        if self.classifier_input not in CLASSIFIER_INPUTS:
            raise ConfigError(
                f"model.classifier_input {self.classifier_input!r} unknown; use 'clean' (latents of the "
                f"clean training inputs) or 'noisy' (latents of the training corruption)"
            )


@register_model("gmcwd", "GMCWD: GMC + re-projection head and joint decoder, denoising reconstruction")
class GMCWD(GMC):
    """GMC + a shared re-projection head ḡ and a joint decoder f̄_{1:M} (seed 000 §4.1.2, eq. 4.6).

    Loss: L_GMC(z of the noisy copy) + Σ_m λ_m · err_m(f̄_{1:M}(ḡ(z_{1:M})), clean x_m).

    What the thesis says: Gaussian noise (σ = 0.5) "is added to one of the input modalities";
    the reconstruction term is the squared error summed over a sample's elements and averaged
    over the batch (eq. 4.6), and λ_m were picked by hand so that "the reconstruction loss values
    [are] similar to the contrastive loss values" (§5.2, Table 5.6: λ = 0.5/0.5, 0.5/0.05,
    0.4/0.1; MHD used 0.5/0.5). It does not say whether any training sample stays clean; its
    setting is reproduced by `recon_reduction: sum, clean_prob: 0` (configs/thesis.yaml).

    What we chose:
    - `recon_reduction: sum` (the thesis). With the per-element mean the reconstruction term was
      ~0.03 against a contrastive term of ~8–10, so GMCWD trained as GMC on noisy inputs, and the
      mean also rescaled image vs trajectory by their sizes (784 vs 200). Summed, the image
      error on synth-mhd is tens to ~100 per sample and the trajectory's a few units, so at
      λ = 0.5 the terms are within an order of magnitude of each other, the thesis' regime.
      `mean` stays available. Each epoch logs `contrastive`, `recon` (weighted) and their ratio
      `recon_ratio`, the number to watch when setting λ_m.
    - `noise_mode: one` (the thesis), noise on `noise_modalities` (default all) and
      `clean_prob: 0.5` of the samples left clean. With every sample noisy the latent of a CLEAN
      input is never seen in training, yet the classifier is trained (and evaluated) on clean
      latents. The ablation behind this default (bench/gmcwd_training_noise.py, data in
      bench/gmcwd_noise/: synth-mhd, 5 400 training samples, 4 epochs, two seeds, scored on the
      validation split) moved from clean_prob 0 to 0.5 clean accuracy 78.6 → 82.8 %, image
      σ = 0.5 52.4 → 73.8 %, image missing 33.4 → 55.0 %; 0.5 was at least as good as 1/3 on
      10 of its 11 cells, and 2/3 gained nothing over 0.5.
    - `classifier_input: clean`: the downstream classifier is trained on latents of the clean
      training inputs (the thesis' protocol); `noisy` trains it on latents of the training
      corruption instead (`classifier_training_inputs`).
    """

    Options = GMCWDOptions
    options: GMCWDOptions

    def __init__(self, specs: tuple[ModalitySpec, ...], options: GMCWDOptions) -> None:
        super().__init__(specs, options)
        o = options
        self.weights = o.weights(self.names)
        self.reproject = mlp(o.latent_dim, (o.head_hidden, o.head_hidden), o.common_dim, o.activation)
        self.joint_decoder = nn.ModuleDict({s.name: Decoder(s, o.common_dim, o.activation) for s in specs})

    @classmethod
    def plan(cls, options: ModelOptions, train: OptimConfig, classifier: OptimConfig) -> Plan:
        """GMC's two stages; with `classifier_input: noisy` the classifier's training latents are
        encoded from `classifier_training_inputs`."""
        assert isinstance(options, GMCWDOptions)
        view = "classifier_training_inputs" if options.classifier_input == "noisy" else None
        return two_stage(train, classifier, view=view)

    def classifier_training_inputs(
        self, inputs: dict[str, Tensor], generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """The training corruption of `inputs`, drawn from `generator`."""
        return self.options.corrupt(inputs, self.ranges, generator)

    def reconstruct(self, z_joint: Tensor) -> dict[str, Tensor]:
        h = self.reproject(z_joint)
        return {n: dec(h) for n, dec in self.joint_decoder.items()}

    def denoising_terms(
        self, batch: dict[str, Tensor]
    ) -> tuple[dict[str, Tensor], list[Tensor], Tensor, dict[str, Any]]:
        """Encode a noisy copy, reconstruct the clean input: (clean inputs, unimodal latents of
        the noisy copy, L_GMC + Σ_m λ_m ‖x̂_m − x_m‖², metrics)."""
        clean = {n: batch[n] for n in self.names}
        noisy = self.options.corrupt(clean, self.ranges)
        joint, unimodal = self.latents(noisy)
        contrastive = gmc_contrastive(joint, unimodal, self.options.tau)
        recon, parts = reconstruction_loss(self.reconstruct(joint), clean, self.weights, self.options.recon_reduction)
        metrics = {"contrastive": float(contrastive.detach()), "recon": float(recon.detach()), **parts}
        metrics["recon_ratio"] = recon_ratio(metrics["recon"], metrics["contrastive"])
        return clean, unimodal, contrastive + recon, metrics

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        _, _, loss, metrics = self.denoising_terms(batch)
        return loss, metrics


@dataclass(frozen=True)
class DGMCOptions(GMCWDOptions):
    test_time_reconstruction: bool = True


@register_model("dgmc", "DGMC: GMCWD + per-modality decoders; at test time encodes its own reconstructions")
class DGMC(GMCWD):
    """GMCWD with a decoder f̄_m per modality (seed 000 §4.1.3, Fig. 4.2).

    Training adds Σ_m λ_m ‖f̄_m(ḡ(z_m)) − x_m‖² to the GMCWD loss, z_m the latent of the noisy
    copy, so each f̄_m learns to denoise its modality from that modality alone (the thesis gives
    the loss as GMCWD's; without this term the per-modality decoders would never be trained).
    Its `recon_ratio` counts both reconstruction terms. Reduction, training noise and their
    defaults are GMCWD's (see there).
    In eval mode each present modality is first replaced by its reconstruction,
    x'_m = f̄_m(ḡ(g(f_m(x̃_m)))), and the latents are those of the reconstructions:
    z_m = g(f_m(x'_m)) and, with every modality present, z_{1:M} = g(f_{1:M}(x')).
    """

    Options = DGMCOptions
    options: DGMCOptions

    def __init__(self, specs: tuple[ModalitySpec, ...], options: DGMCOptions) -> None:
        super().__init__(specs, options)
        o = options
        self.decoders = nn.ModuleDict({s.name: Decoder(s, o.common_dim, o.activation) for s in specs})

    def modality_reconstruction(self, name: str, x: Tensor) -> Tensor:
        """f̄_m(ḡ(g(f_m(x)))): the modality denoised through its own latent."""
        return self.decoders[name](self.reproject(self.modality_latent(name, x)))

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        clean, unimodal, loss, metrics = self.denoising_terms(batch)
        recon = {n: self.decoders[n](self.reproject(z)) for n, z in zip(self.names, unimodal, strict=True)}
        own, parts = reconstruction_loss(recon, clean, self.weights, self.options.recon_reduction)
        metrics.update({"recon_own": float(own.detach()), **{f"{k}_own": v for k, v in parts.items()}})
        metrics["recon_ratio"] = recon_ratio(metrics["recon"] + metrics["recon_own"], metrics["contrastive"])
        return loss + own, metrics

    def encode(self, inputs: dict[str, Tensor], present: tuple[str, ...] | None = None) -> Tensor:
        if self.training or not self.options.test_time_reconstruction:
            return super().encode(inputs, present)
        names = self.present_names(present)
        rebuilt = {n: self.modality_reconstruction(n, inputs[n]) for n in names}
        return super().encode(rebuilt, names)
