"""The autoencoder-based models of seed 000 (§4.1.1–4.1.2, eq. 4.1–4.5).

Three families share one training step — corrupt a copy of the input (denoising models only),
encode, decode, and score the reconstruction against the CLEAN input, plus β·KL for the
variational ones:

- concatenated (DAE, VAE): every modality flattened into one vector, one MLP encoder and decoder;
- per-modality (MDAE, MVAE): an encoder and a decoder per modality, fused by a mean (MDAE) or a
  product of Gaussian experts (MVAE);
- common (CMDAE, CMVAE, CMDVAE): per-modality encoders, a common encoder over the SUM of their
  outputs, a common decoder, and per-modality decoders after it (eq. 4.4).

Reconstruction errors are averaged over elements by default (`recon_reduction: mean`;
`sum` gives the thesis' summed error per sample) and the KL is put on the same scale (divided by
the number of input elements of one sample under `mean`, `gaussian_kl`), so β keeps its ELBO
meaning. Denoising options and the corruption are in `denoising.py`; these models keep every
training sample noisy by default (`clean_prob: 0`).
Sampling noise and input noise both come from the global torch RNG, which the training run
seeds; `encode` is deterministic (the latent, or the posterior mean).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from robustmm.data.base import ModalitySpec
from robustmm.errors import ConfigError
from robustmm.models.base import RepresentationModel, register_model
from robustmm.models.denoising import DenoisingOptions, ReconOptions
from robustmm.models.encoders import Decoder, Encoder, RangeOutput, activation, mlp
from robustmm.models.losses import gaussian_kl, product_of_experts, reconstruction_loss, reparameterise

DECODE_FROM = ("own", "joint")

Posterior = tuple[Tensor, Tensor]


# ----------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class VariationalOptions(ReconOptions):
    """Variational models: weight β of the KL term."""

    beta: float = 1.0

    def check(self, specs: tuple[ModalitySpec, ...]) -> None:
        super().check(specs)
        if self.beta < 0:
            raise ConfigError(f"model.beta must be ≥ 0 (1 is the ELBO), got {self.beta}")


def _check_hidden(hidden: tuple[int, ...]) -> None:
    if not all(w >= 1 for w in hidden):
        raise ConfigError(f"model.hidden must be a list of layer widths ≥ 1, e.g. [512, 512]; got {hidden!r}")


@dataclass(frozen=True)
class ConcatOptions(ReconOptions):
    """Concatenated models: hidden widths of the MLP encoder (the decoder mirrors them)."""

    hidden: tuple[int, ...] = (512, 512)

    def check(self, specs: tuple[ModalitySpec, ...]) -> None:
        super().check(specs)
        _check_hidden(self.hidden)


@dataclass(frozen=True)
class CommonOptions(ReconOptions):
    """Common models: width of z_m and of the common decoder's output; hidden widths of the common MLPs."""

    common_dim: int = 64
    hidden: tuple[int, ...] = (512, 512)

    def check(self, specs: tuple[ModalitySpec, ...]) -> None:
        super().check(specs)
        if self.common_dim < 1:
            raise ConfigError(f"model.common_dim must be ≥ 1, got {self.common_dim}")
        _check_hidden(self.hidden)


@dataclass(frozen=True)
class DAEOptions(DenoisingOptions, ConcatOptions):
    pass


@dataclass(frozen=True)
class VAEOptions(VariationalOptions, ConcatOptions):
    pass


@dataclass(frozen=True)
class MDAEOptions(DenoisingOptions):
    decode_from: str = "own"

    def check(self, specs: tuple[ModalitySpec, ...]) -> None:
        super().check(specs)
        if self.decode_from not in DECODE_FROM:
            raise ConfigError(
                f"model.decode_from {self.decode_from!r} unknown; use 'own' (Dec_m(z_m), eq. 4.3) "
                f"or 'joint' (Dec_m(z_1:M))"
            )


@dataclass(frozen=True)
class MVAEOptions(VariationalOptions):
    subsample: bool = True


@dataclass(frozen=True)
class CMDAEOptions(DenoisingOptions, CommonOptions):
    pass


@dataclass(frozen=True)
class CMVAEOptions(VariationalOptions, CommonOptions):
    pass


@dataclass(frozen=True)
class CMDVAEOptions(DenoisingOptions, CMVAEOptions):
    pass


# ------------------------------------------------------------------------------------- shared base


class AutoencoderModel(RepresentationModel):
    """The shared training step: corrupt (if denoising) → `code` → sample (if variational) → decode.

    Subclasses give `code(inputs, names)`, the encoder output from the modalities `names` — the
    latent z, or [μ, logvar] concatenated for variational models — and `decode(z)`, the
    reconstruction of every modality; `reconstruct` may be overridden where decoding does not go
    through one fused latent (MDAE's eq. 4.3).
    """

    variational: ClassVar[bool] = False
    options: ReconOptions

    def __init__(self, specs: tuple[ModalitySpec, ...], options: ReconOptions) -> None:
        super().__init__(specs, options)
        self.weights = options.weights(self.names)
        self.ranges = {s.name: s.value_range for s in specs}
        self.elements = sum(math.prod(s.shape) for s in specs)

    @property
    def code_dim(self) -> int:
        """Width of the encoder output: z, or μ and logvar side by side."""
        return 2 * self.latent_dim if self.variational else self.latent_dim

    @abstractmethod
    def code(self, inputs: dict[str, Tensor], names: tuple[str, ...]) -> Tensor:
        """Encoder output (B × code_dim) from the modalities `names` only."""

    @abstractmethod
    def decode(self, z: Tensor) -> dict[str, Tensor]:
        """Reconstruction of every modality from a latent sample."""

    def corrupt(self, clean: dict[str, Tensor]) -> dict[str, Tensor]:
        """What the encoders see in training: a noisy COPY for denoising models, else the input."""
        o = self.options
        if isinstance(o, DenoisingOptions):
            return o.corrupt(clean, self.ranges)
        return dict(clean)

    def sample(self, h: Tensor) -> tuple[Tensor, Posterior | None]:
        """Latent to decode from an encoder output, and the posterior (μ, logvar) if variational.

        Training draws a reparameterised sample; eval mode decodes the mean.
        """
        if not self.variational:
            return h, None
        mu, logvar = h.chunk(2, dim=-1)
        return (reparameterise(mu, logvar) if self.training else mu), (mu, logvar)

    def reconstruct(self, seen: dict[str, Tensor]) -> tuple[dict[str, Tensor], Posterior | None]:
        z, posterior = self.sample(self.code(seen, self.names))
        return self.decode(z), posterior

    def objective(
        self, recon: dict[str, Tensor], clean: dict[str, Tensor], posterior: Posterior | None
    ) -> tuple[Tensor, dict[str, float]]:
        """Σ_m λ_m·err_m over the modalities in `recon`, + β·KL(posterior ‖ N(0, I)) on the same
        scale (per element with reduction "mean", per sample with "sum")."""
        reduction = self.options.recon_reduction
        rec, parts = reconstruction_loss(recon, clean, self.weights, reduction)
        metrics = {"recon": float(rec.detach()), **parts}
        if posterior is None:
            return rec, metrics
        kl = gaussian_kl(*posterior, elements=self.elements if reduction == "mean" else 1)
        metrics["kl"] = float(kl.detach())
        return rec + self.options.beta * kl, metrics  # type: ignore[attr-defined]

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        clean = {n: batch[n] for n in self.names}
        recon, posterior = self.reconstruct(self.corrupt(clean))
        return self.objective(recon, clean, posterior)

    def encode(self, inputs: dict[str, Tensor], present: tuple[str, ...] | None = None) -> Tensor:
        """The latent (deterministic models) or the posterior mean μ (variational ones).

        Mode (train/eval) is the caller's: BatchNorm in the sound networks must be in eval mode.
        """
        return self.code(inputs, self.present_names(present))[:, : self.latent_dim]


# ------------------------------------------------------------------------------------ concatenated


class ConcatenatedAutoencoder(AutoencoderModel):
    """One MLP encoder on the concatenation of all (flattened) modalities, one MLP decoder.

    Each modality is first mapped from its value range to [-1, 1] (as `Trunk` does) so a wide
    range does not dominate the first layer. The decoder output is split back per modality,
    reshaped and squashed into its range. An ABSENT modality at encode time is filled with the
    lower end of its value range (an all-black image, a zero trajectory after min–max scaling):
    the one input the network can always be given, which leaves the present modality to carry
    the latent — how well it does is what the missing-modality sweep measures.
    """

    options: ConcatOptions

    def __init__(self, specs: tuple[ModalitySpec, ...], options: ConcatOptions) -> None:
        super().__init__(specs, options)
        o = options
        self.sizes = [math.prod(s.shape) for s in specs]
        self.encoder = mlp(self.elements, o.hidden, self.code_dim, o.activation)
        self.decoder = mlp(o.latent_dim, tuple(reversed(o.hidden)), self.elements, o.activation)
        self.outputs = nn.ModuleDict({s.name: RangeOutput(s.value_range) for s in specs})

    def flatten(self, inputs: dict[str, Tensor], names: tuple[str, ...]) -> Tensor:
        ref = inputs[names[0]]
        parts = []
        for spec in self.specs:
            lo, hi = spec.value_range
            if spec.name in names:
                x = inputs[spec.name]
            else:
                x = torch.full((len(ref), *spec.shape), lo, dtype=ref.dtype, device=ref.device)
            parts.append(((x - (lo + hi) / 2) / ((hi - lo) / 2)).flatten(1))
        return torch.cat(parts, dim=1)

    def code(self, inputs: dict[str, Tensor], names: tuple[str, ...]) -> Tensor:
        return self.encoder(self.flatten(inputs, names))

    def decode(self, z: Tensor) -> dict[str, Tensor]:
        chunks = self.decoder(z).split(self.sizes, dim=1)
        return {s.name: self.outputs[s.name](c.view(-1, *s.shape)) for s, c in zip(self.specs, chunks, strict=True)}


@register_model("dae", "DAE: modalities concatenated, one MLP encoder/decoder, denoising reconstruction")
class DAE(ConcatenatedAutoencoder):
    """Seed 000 eq. 4.1: Σ_m λ_m ‖Dec(Enc(x̃))_m − x_m‖², x̃ a noisy copy, target the clean x."""

    Options = DAEOptions


@register_model("vae", "VAE: modalities concatenated, one Gaussian encoder and decoder, β·KL + reconstruction")
class VAE(ConcatenatedAutoencoder):
    """Seed 000 eq. 4.2: β·KL(q(z|x) ‖ N(0, I)) + Σ_m λ_m ‖x̂_m − x_m‖², no input noise."""

    Options = VAEOptions
    variational = True


# ------------------------------------------------------------------------------------ per modality


class PerModalityAutoencoder(AutoencoderModel):
    """An encoder (`encoders.Encoder`) and a decoder (`encoders.Decoder`) per modality.

    Subclasses set the widths: `encoder_width` (the output of Enc_m) and `decoder_width` (the
    input of Dec_m).
    """

    def __init__(self, specs: tuple[ModalitySpec, ...], options: ReconOptions) -> None:
        super().__init__(specs, options)
        act = options.activation
        self.encoders = nn.ModuleDict({s.name: Encoder(s, self.encoder_width, act) for s in specs})
        self.decoders = nn.ModuleDict({s.name: Decoder(s, self.decoder_width, act) for s in specs})

    @property
    def encoder_width(self) -> int:
        return self.code_dim

    @property
    def decoder_width(self) -> int:
        return self.latent_dim

    def modality_codes(self, inputs: dict[str, Tensor], names: tuple[str, ...]) -> list[Tensor]:
        return [self.encoders[n](inputs[n]) for n in names]

    def decode(self, z: Tensor) -> dict[str, Tensor]:
        return {n: dec(z) for n, dec in self.decoders.items()}


@register_model("mdae", "MDAE: per-modality encoders/decoders, z = mean of the z_m, denoising reconstruction")
class MDAE(PerModalityAutoencoder):
    """Seed 000 eq. 4.3: Σ_m λ_m ‖Dec_m(Enc_m(x̃_m)) − x_m‖², z_{1:M} = mean of the present z_m.

    With decode_from "own" (eq. 4.3) the modalities are trained separately and meet only in the
    mean at encode time; "joint" decodes every modality from z_{1:M}, which ties the z_m together.
    """

    Options = MDAEOptions
    options: MDAEOptions

    def code(self, inputs: dict[str, Tensor], names: tuple[str, ...]) -> Tensor:
        return torch.stack(self.modality_codes(inputs, names)).mean(dim=0)

    def reconstruct(self, seen: dict[str, Tensor]) -> tuple[dict[str, Tensor], Posterior | None]:
        if self.options.decode_from == "joint":
            return super().reconstruct(seen)
        zs = self.modality_codes(seen, self.names)
        return {n: self.decoders[n](z) for n, z in zip(self.names, zs, strict=True)}, None


@register_model("mvae", "MVAE: per-modality Gaussian experts, product of experts with prior, ELBO (+ subsampled)")
class MVAE(PerModalityAutoencoder):
    """Wu & Goodman's MVAE: q(z|x_S) ∝ N(0, I) · Π_{m∈S} q_m(z|x_m), each decoder reads the sample.

    Loss: recon + β·KL(q_PoE ‖ N(0, I)) of all modalities; with `subsample` (as in their paper)
    plus, for each modality m, the ELBO of q(z|x_m) reconstructing x_m alone — what trains each
    expert to stand on its own when the other modalities are missing. The unimodal terms use the
    same λ_m and the same KL divisor as the joint term, i.e. each is modality m's ELBO rescaled
    to the per-element scale of the whole sample.
    """

    Options = MVAEOptions
    options: MVAEOptions
    variational = True

    def code(self, inputs: dict[str, Tensor], names: tuple[str, ...]) -> Tensor:
        experts = [h.chunk(2, dim=-1) for h in self.modality_codes(inputs, names)]
        mu, logvar = product_of_experts([e[0] for e in experts], [e[1] for e in experts], prior=True)
        return torch.cat([mu, logvar], dim=-1)

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        loss, metrics = super().loss(batch)
        if not self.options.subsample:
            return loss, metrics
        single = None
        for name in self.names:
            z, posterior = self.sample(self.code(batch, (name,)))
            term, _ = self.objective({name: self.decoders[name](z)}, batch, posterior)
            single = term if single is None else single + term
        assert single is not None
        metrics["elbo_single"] = float(single.detach())
        return loss + single, metrics


# ------------------------------------------------------------------------------------------ common


class CommonAutoencoder(PerModalityAutoencoder):
    """Seed 000 eq. 4.4: x̂_m = Dec_m(Dec_{1:M}(z_{1:M})), z_{1:M} = Enc_{1:M}(Σ_m Enc_m(x_m)).

    Enc_m maps to `common_dim`, the common encoder (MLP) from there to the latent (or μ, logvar),
    the common decoder (MLP + activation) back to `common_dim`, and Dec_m reads that: the
    per-modality networks are symmetric around the common pair. Encoding a subset sums only the
    present z_m, the sum (not the mean) the thesis feeds the common encoder.
    """

    options: CommonOptions

    def __init__(self, specs: tuple[ModalitySpec, ...], options: CommonOptions) -> None:
        super().__init__(specs, options)
        o = options
        self.common_encoder = mlp(o.common_dim, o.hidden, self.code_dim, o.activation)
        self.common_decoder = nn.Sequential(
            mlp(o.latent_dim, tuple(reversed(o.hidden)), o.common_dim, o.activation), activation(o.activation)
        )

    @property
    def encoder_width(self) -> int:
        return self.options.common_dim

    @property
    def decoder_width(self) -> int:
        return self.options.common_dim

    def code(self, inputs: dict[str, Tensor], names: tuple[str, ...]) -> Tensor:
        return self.common_encoder(torch.stack(self.modality_codes(inputs, names)).sum(dim=0))

    def decode(self, z: Tensor) -> dict[str, Tensor]:
        return super().decode(self.common_decoder(z))


@register_model("cmdae", "CMDAE: MDAE + common encoder over the sum of the z_m and common decoder, denoising")
class CMDAE(CommonAutoencoder):
    """Seed 000 eq. 4.4 with x̃ a noisy copy of the input; target the clean input."""

    Options = CMDAEOptions


@register_model("cmvae", "CMVAE: CMDAE made variational (Gaussian common encoder), β·KL + reconstruction")
class CMVAE(CommonAutoencoder):
    """Seed 000 eq. 4.5: β·KL(q(z|x) ‖ N(0, I)) + Σ_m λ_m ‖x̂_m − x_m‖², no input noise."""

    Options = CMVAEOptions
    variational = True


@register_model("cmdvae", "CMDVAE: CMVAE trained on noisy inputs to reconstruct the clean ones")
class CMDVAE(CMVAE):
    """Seed 000 eq. 4.5 with x̃ a noisy copy of the input (as a DAE); target the clean input."""

    Options = CMDVAEOptions
