from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from robustmm.data.base import ModalitySpec
from robustmm.errors import ConfigError
from robustmm.models import MODELS, build_model
from robustmm.models import autoencoders as ae_module
from robustmm.models.losses import gaussian_kl, product_of_experts

SOUND = ModalitySpec("sound", "sound", (1, 32, 128))
RGB = ModalitySpec("svhn", "rgb", (3, 32, 32))
ALL = ("dae", "vae", "mdae", "mvae", "cmdae", "cmvae", "cmdvae")
VARIATIONAL = ("vae", "mvae", "cmvae", "cmdvae")
DENOISING = ("dae", "mdae", "cmdae", "cmdvae")
TINY = {"latent_dim": 4}
TINY_MLP = {"hidden": [8]}
TINY_COMMON = {"hidden": [8], "common_dim": 6}


def tiny(name: str, **extra) -> dict:
    sizes = {"dae": TINY_MLP, "vae": TINY_MLP, "cmdae": TINY_COMMON, "cmvae": TINY_COMMON, "cmdvae": TINY_COMMON}
    return {**TINY, **sizes.get(name, {}), **extra}


def batch_for(specs, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for s in specs:
        lo, hi = s.value_range
        out[s.name] = lo + (hi - lo) * torch.rand(n, *s.shape, generator=g)
    return out


def test_all_seven_are_registered_with_a_summary():
    for name in ALL:
        assert name in MODELS and MODELS.get(name).summary


def test_product_of_experts_by_hand():
    # expert 1: μ=1, σ²=1 (precision 1); expert 2: μ=3, σ²=0.5 (precision 2); prior: μ=0, precision 1
    # precision 1+2+1 = 4 -> σ² = 0.25; μ = (1·1 + 3·2 + 0·1) / 4 = 1.75
    mu, logvar = product_of_experts(
        [torch.tensor([[1.0]]), torch.tensor([[3.0]])], [torch.tensor([[0.0]]), torch.tensor([[math.log(0.5)]])]
    )
    assert float(mu) == pytest.approx(1.75)
    assert float(logvar.exp()) == pytest.approx(0.25)
    # without the prior: precision 3 -> σ² = 1/3, μ = 7/3
    mu, logvar = product_of_experts(
        [torch.tensor([[1.0]]), torch.tensor([[3.0]])],
        [torch.tensor([[0.0]]), torch.tensor([[math.log(0.5)]])],
        prior=False,
    )
    assert float(mu) == pytest.approx(7 / 3)
    assert float(logvar.exp()) == pytest.approx(1 / 3)


def test_mvae_encodes_the_poe_mean_of_the_present_experts(toy):
    torch.manual_seed(0)
    model = build_model("mvae", toy.modalities, tiny("mvae")).eval()
    b = batch_for(toy.modalities)
    with torch.no_grad():
        experts = {n: model.encoders[n](b[n]).chunk(2, dim=-1) for n in model.names}
        one = product_of_experts([experts["image"][0]], [experts["image"][1]])[0]
        both = product_of_experts([e[0] for e in experts.values()], [e[1] for e in experts.values()])[0]
        assert torch.allclose(model.encode(b, present=("image",)), one, atol=1e-6)
        assert torch.allclose(model.encode(b), both, atol=1e-6)


def test_gaussian_kl_matches_torch():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1).mean()
    assert float(gaussian_kl(mu, logvar)) == pytest.approx(float(ref), rel=1e-5)
    assert float(gaussian_kl(mu, logvar, elements=984)) == pytest.approx(float(ref) / 984, rel=1e-5)


def test_vae_kl_is_per_input_element(toy):
    model = build_model("vae", toy.modalities, tiny("vae")).eval()  # eval: decode μ, no sampling
    b = batch_for(toy.modalities)
    with torch.no_grad():
        _, metrics = model.loss(b)
        mu, logvar = model.code(b, model.names).chunk(2, dim=-1)
    assert model.elements == 784 + 200
    assert metrics["kl"] == pytest.approx(float(gaussian_kl(mu, logvar)) / 984, rel=1e-5)


@pytest.mark.parametrize("name", DENOISING)
def test_denoising_reconstructs_the_clean_input(name, toy, monkeypatch):
    """The encoders see a noisy copy, the reconstruction target is the CLEAN input, the batch stays clean."""
    seen = {}
    real = ae_module.reconstruction_loss

    def spy(recon, target, weights, *rest):
        seen["target"] = {k: v.clone() for k, v in target.items()}
        return real(recon, target, weights, *rest)

    monkeypatch.setattr(ae_module, "reconstruction_loss", spy)
    model = build_model(name, toy.modalities, tiny(name, noise_sigma=0.5, noise_mode="all"))
    real_reconstruct = model.reconstruct

    def spy_reconstruct(inputs):
        seen["encoded"] = {k: v.clone() for k, v in inputs.items()}
        return real_reconstruct(inputs)

    monkeypatch.setattr(model, "reconstruct", spy_reconstruct)
    batch = batch_for(toy.modalities)
    before = {k: v.clone() for k, v in batch.items()}
    model.loss(batch)
    for n in before:
        assert torch.equal(batch[n], before[n]), "the batch was modified in place"
        assert torch.equal(seen["target"][n], before[n]), "reconstruction target is not the clean input"
        assert not torch.equal(seen["encoded"][n], before[n]), "the encoders did not see the noisy copy"


@pytest.mark.parametrize("name", ["vae", "mvae", "cmvae"])
def test_variational_models_see_no_noise(name, toy):
    model = build_model(name, toy.modalities, tiny(name))
    batch = batch_for(toy.modalities)
    assert all(torch.equal(v, batch[k]) for k, v in model.corrupt(batch).items())


@pytest.mark.parametrize("name", ["dae", "vae"])
def test_concatenated_models_fill_a_missing_modality_with_the_range_minimum(name):
    specs = (ModalitySpec("image", "image", (1, 28, 28)), ModalitySpec("traj", "vector", (20,), (-1.0, 2.0)))
    torch.manual_seed(0)
    model = build_model(name, specs, tiny(name)).eval()
    b = batch_for(specs)
    filled = {"image": b["image"], "traj": torch.full_like(b["traj"], -1.0)}
    with torch.no_grad():
        z = model.encode(b, present=("image",))
        assert torch.allclose(z, model.encode(filled))
        assert torch.allclose(z, model.encode({"image": b["image"]}, present=("image",)))  # absent key is fine
        assert not torch.allclose(z, model.encode(b))


def test_mdae_and_cmdae_fuse_the_present_latents(toy):
    torch.manual_seed(0)
    b = batch_for(toy.modalities)
    mdae = build_model("mdae", toy.modalities, tiny("mdae")).eval()
    cmdae = build_model("cmdae", toy.modalities, tiny("cmdae")).eval()
    with torch.no_grad():
        zs = {n: mdae.encoders[n](b[n]) for n in mdae.names}
        assert torch.allclose(mdae.encode(b, present=("image",)), zs["image"])
        assert torch.allclose(mdae.encode(b), (zs["image"] + zs["trajectory"]) / 2, atol=1e-6)
        hs = {n: cmdae.encoders[n](b[n]) for n in cmdae.names}
        assert torch.allclose(cmdae.encode(b, present=("trajectory",)), cmdae.common_encoder(hs["trajectory"]))
        assert torch.allclose(cmdae.encode(b), cmdae.common_encoder(hs["image"] + hs["trajectory"]), atol=1e-6)


def test_mdae_decode_from_own_or_joint(toy):
    b = batch_for(toy.modalities)
    for mode in ("own", "joint"):
        model = build_model("mdae", toy.modalities, tiny("mdae", decode_from=mode, noise_sigma=0.0)).eval()
        with torch.no_grad():
            recon, _ = model.reconstruct(b)
            z_img = model.encoders["image"](b["image"])
            source = z_img if mode == "own" else model.encode(b)
            assert torch.allclose(recon["image"], model.decoders["image"](source), atol=1e-6)


def test_mvae_subsample_adds_the_unimodal_elbos(toy):
    b = batch_for(toy.modalities)
    torch.manual_seed(0)
    with_sub = build_model("mvae", toy.modalities, tiny("mvae")).eval()
    without = build_model("mvae", toy.modalities, tiny("mvae", subsample=False)).eval()
    without.load_state_dict(with_sub.state_dict())
    with torch.no_grad():
        loss_sub, m_sub = with_sub.loss(b)
        loss, m = without.loss(b)
    assert "elbo_single" in m_sub and "elbo_single" not in m
    assert float(loss_sub) == pytest.approx(float(loss) + m_sub["elbo_single"], rel=1e-5)


def test_option_errors(toy):
    mods = toy.modalities
    with pytest.raises(ConfigError, match="beta must be ≥ 0"):
        build_model("vae", mods, {"beta": -1.0})
    with pytest.raises(ConfigError, match="noise_sigma must be ≥ 0"):
        build_model("cmdvae", mods, {"noise_sigma": -0.1})
    with pytest.raises(ConfigError, match="noise_mode 'some' unknown"):
        build_model("dae", mods, {"noise_mode": "some"})
    with pytest.raises(ConfigError, match="decode_from 'mean' unknown"):
        build_model("mdae", mods, {"decode_from": "mean"})
    with pytest.raises(ConfigError, match="common_dim must be ≥ 1"):
        build_model("cmvae", mods, {"common_dim": 0})
    with pytest.raises(ConfigError, match="hidden must be a list of layer widths"):
        build_model("dae", mods, {"hidden": [0]})
    with pytest.raises(ConfigError, match="names modality 'audio'"):
        build_model("mdae", mods, {"recon_weights": {"audio": 1.0}})
    with pytest.raises(ConfigError, match="has no option 'noise_sigma'"):
        build_model("vae", mods, {"noise_sigma": 0.5})
    with pytest.raises(ConfigError, match="must be true or false"):
        build_model("mvae", mods, {"subsample": "yes"})
    with pytest.raises(ConfigError, match="at least 2 modalities"):
        build_model("cmdae", mods[:1], {})


def test_recon_weights_default_and_explicit(toy):
    assert build_model("dae", toy.modalities, tiny("dae")).weights == {"image": 0.5, "trajectory": 0.5}
    m = build_model("cmvae", toy.modalities, tiny("cmvae", recon_weights={"image": 0.4, "trajectory": 0.1}))
    assert m.weights == {"image": 0.4, "trajectory": 0.1}
