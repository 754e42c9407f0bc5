"""Loss terms shared by the model families (the training-time corruption is in denoising.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from robustmm.errors import ConfigError


def gmc_contrastive(joint: Tensor, unimodal: list[Tensor], tau: float) -> Tensor:
    """L_GMC (seed 000 eq. 3.29-3.32): for each modality m, NT-Xent between z_m and z_{1:M}.

    Positive pairs are (z_{i,m}, z_{i,1:M}) in both directions; every other entry of the 2B×2B
    similarity matrix except the trivial diagonal is a negative (eq. 3.30). Latents must be
    L2-normalised. Averaged over the batch as in the public GMC code (the thesis sums; the
    difference is a constant factor absorbed by the learning rate).
    """
    b = joint.shape[0]
    eye = torch.eye(2 * b, dtype=torch.bool, device=joint.device)
    total = joint.new_zeros(2 * b)
    for z_m in unimodal:
        both = torch.cat([joint, z_m], dim=0)
        logits = (both @ both.T / tau).masked_fill(eye, float("-inf"))
        positive = (joint * z_m).sum(dim=-1) / tau
        total = total + torch.logsumexp(logits, dim=1) - torch.cat([positive, positive])
    return total.mean()


def reconstruction_loss(
    recon: dict[str, Tensor], target: dict[str, Tensor], weights: dict[str, float], reduction: str = "mean"
) -> tuple[Tensor, dict[str, float]]:
    """Σ_m λ_m · err_m over the modalities in `recon`, and each unweighted err_m as a metric.

    reduction "sum": err_m = mean over samples of Σ_elements (x̂_{i,m} − x_{i,m})², the thesis'
    summed squared error per sample (seed 000 eq. 4.1–4.6), so a 784-pixel image weighs ~4× a
    200-value trajectory at equal λ; "mean": also averaged over elements (F.mse_loss), every
    modality on one per-element scale and λ_m alone sets its share.
    """
    if reduction not in ("sum", "mean"):
        raise ConfigError(f"reconstruction reduction {reduction!r} unknown; use 'sum' or 'mean'")
    total = None
    parts = {}
    for name, x_hat in recon.items():
        if reduction == "sum":
            err = (x_hat - target[name]).pow(2).flatten(1).sum(dim=1).mean()
        else:
            err = F.mse_loss(x_hat, target[name])
        parts[f"recon_{name}"] = float(err.detach())
        term = weights[name] * err
        total = term if total is None else total + term
    assert total is not None
    return total, parts


def reparameterise(mu: Tensor, logvar: Tensor) -> Tensor:
    """A sample z = μ + σ·ε, ε ~ N(0, I), differentiable in μ and logvar (Kingma & Welling).

    ε comes from the global torch RNG, which the training run seeds (as the input noise of
    `DenoisingOptions.corrupt`).
    """
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def gaussian_kl(mu: Tensor, logvar: Tensor, elements: int = 1) -> Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)), summed over latent dims, averaged over the batch, ÷ `elements`.

    Seed 000 eq. 4.2/4.5 write the term as β Σ (1 + log σ² − μ² − σ²), dropping the −½; this is
    the standard KL = ½ Σ (μ² + σ² − 1 − log σ²) ≥ 0. With reduction "mean" `reconstruction_loss`
    averages over input elements, so models pass `elements` = the number of input elements of ONE
    sample (all modalities together): the KL is then on the same per-element scale, and β = 1 is
    the ELBO of
    a Gaussian decoder (variance ½) written per element — exactly so when the reconstruction
    weights are λ_m = D_m / D (modality m's share of the D elements); other λ_m reweight the
    modalities' likelihoods against each other. Without the division the KL of a 784+200-element
    sample would weigh ~1000× more against the per-element reconstruction, pushing the posterior
    onto the prior. With reduction "sum" both terms are per sample already: `elements` = 1.
    """
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)
    return kl.mean() / elements


def product_of_experts(mus: list[Tensor], logvars: list[Tensor], prior: bool = True) -> tuple[Tensor, Tensor]:
    """Gaussian product of experts (Wu & Goodman 2018): precisions add, means are precision-weighted.

    1/σ² = Σ_e 1/σ_e², μ = σ² Σ_e μ_e/σ_e². With `prior`, the expert N(0, I) joins the product, so
    the posterior of any subset of modalities (even one) is well defined and shrinks towards the
    prior. Computed in log-precision with logsumexp: a very confident expert (logvar ≪ 0) neither
    overflows nor swamps the others numerically. Returns (μ, logvar) of the product.
    """
    if not mus or len(mus) != len(logvars):
        raise ValueError(f"product_of_experts needs as many means as logvars (≥ 1), got {len(mus)}, {len(logvars)}")
    mu = torch.stack(mus)
    log_precision = -torch.stack(logvars)
    if prior:
        mu = torch.cat([mu, torch.zeros_like(mu[:1])])
        log_precision = torch.cat([log_precision, torch.zeros_like(log_precision[:1])])
    log_total = torch.logsumexp(log_precision, dim=0)
    mean = (mu * torch.exp(log_precision - log_total)).sum(dim=0)
    return mean, -log_total
