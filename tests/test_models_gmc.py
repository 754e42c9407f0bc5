from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from robustmm.data.base import ModalitySpec
from robustmm.errors import ConfigError, UnknownNameError
from robustmm.models import build_model
from robustmm.models import gmc as gmc_module
from robustmm.models.losses import gmc_contrastive

SOUND = ModalitySpec("sound", "sound", (1, 32, 128))
RGB = ModalitySpec("svhn", "rgb", (3, 32, 32))


def batch_for(specs, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {s.name: torch.rand(n, *s.shape, generator=g) for s in specs}


def naive_gmc_loss(joint, unimodal, tau):
    """Seed 000 eq. 3.29-3.32, written out term by term."""
    b = joint.shape[0]
    s = lambda u, v: math.exp(float(F.cosine_similarity(u, v, dim=0)) / tau)  # noqa: E731
    total = 0.0
    for z in unimodal:
        for i in range(b):
            for p, q in ((z, joint), (joint, z)):
                omega = sum(s(p[i], p[j]) for j in range(b) if j != i) + sum(s(p[i], q[j]) for j in range(b))
                total += -math.log(s(p[i], q[i]) / omega)
    return total / (2 * b)


def test_contrastive_matches_the_equations():
    g = torch.Generator().manual_seed(1)
    joint = F.normalize(torch.randn(4, 5, generator=g), dim=1)
    uni = [F.normalize(torch.randn(4, 5, generator=g), dim=1) for _ in range(2)]
    assert float(gmc_contrastive(joint, uni, 0.3)) == pytest.approx(naive_gmc_loss(joint, uni, 0.3), rel=1e-5)


def test_missing_modality_encoding_is_mean_of_present_latents(toy):
    model = build_model("gmc", toy.modalities, {}).eval()
    b = batch_for(toy.modalities)
    z_img = model.modality_latent("image", b["image"])
    assert torch.allclose(model.encode(b, present=("image",)), z_img)
    assert torch.allclose(z_img.norm(dim=1), torch.ones(len(z_img)), atol=1e-5), "a latent on the unit sphere"
    assert torch.allclose(model.encode(b), model.joint_latent(b))


def test_gmcwd_reconstructs_the_clean_input(toy, monkeypatch):
    """The denoising target is the CLEAN input, and the caller's batch is not corrupted."""
    seen = {}
    real = gmc_module.reconstruction_loss

    def spy(recon, target, weights, *rest):
        seen["target"] = {k: v.clone() for k, v in target.items()}
        return real(recon, target, weights, *rest)

    real_latents = gmc_module.GMCWD.latents

    def spy_latents(self, inputs):
        seen["encoded"] = {k: v.clone() for k, v in inputs.items()}
        return real_latents(self, inputs)

    monkeypatch.setattr(gmc_module, "reconstruction_loss", spy)
    monkeypatch.setattr(gmc_module.GMCWD, "latents", spy_latents)
    model = build_model("gmcwd", toy.modalities, {"noise_sigma": 0.5, "noise_mode": "all", "clean_prob": 0.0})
    batch = batch_for(toy.modalities)
    before = {k: v.clone() for k, v in batch.items()}
    model.loss(batch)
    for name in before:
        assert torch.equal(batch[name], before[name]), "the batch was modified in place"
        assert torch.equal(seen["target"][name], before[name]), "reconstruction target is not the clean input"
        assert not torch.equal(seen["encoded"][name], before[name]), "the encoders did not see the noisy copy"


def test_option_errors(toy):
    with pytest.raises(UnknownNameError, match="did you mean 'gmcwd'"):
        build_model("gmcwdd", toy.modalities, {})
    with pytest.raises(ConfigError, match="has no option 'lattent_dim'"):
        build_model("gmc", toy.modalities, {"lattent_dim": 3})
    with pytest.raises(ConfigError, match="tau must be > 0"):
        build_model("gmc", toy.modalities, {"tau": 0.0})
    with pytest.raises(ConfigError, match="names modality 'audio'"):
        build_model("gmcwd", toy.modalities, {"recon_weights": {"audio": 1.0}})
    with pytest.raises(ConfigError, match="model.latent_dim must be an integer, got 'big'"):
        build_model("gmc", toy.modalities, {"latent_dim": "big"})
    with pytest.raises(ConfigError, match="at least 2 modalities"):
        build_model("gmc", toy.modalities[:1], {})


def test_recon_weights_default_and_explicit(toy):
    m = build_model("gmcwd", toy.modalities, {})
    assert m.weights == {"image": 0.5, "trajectory": 0.5}
    m = build_model("gmcwd", toy.modalities, {"recon_weights": {"image": 0.4, "trajectory": 0.1}})
    assert m.weights == {"image": 0.4, "trajectory": 0.1}
