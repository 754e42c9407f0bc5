"""Reconstruction reduction, training noise (share left clean, which modalities) and what the
GMCWD family logs and feeds its classifier."""

from __future__ import annotations

import pytest
import torch

from robustmm.config import OptimConfig
from robustmm.errors import ConfigError
from robustmm.models import build_model
from robustmm.models.denoising import DenoisingOptions
from robustmm.models.losses import gaussian_kl, reconstruction_loss
from robustmm.train import encode_all, fit_classifier, fit_representation

RANGES = {"image": (0.0, 1.0), "trajectory": (0.0, 1.0)}


def flat_batch(n: int = 200) -> dict[str, torch.Tensor]:
    return {"image": torch.full((n, 1, 4, 4), 0.5), "trajectory": torch.full((n, 6), 0.5)}


def noisy_rows(clean: dict[str, torch.Tensor], noisy: dict[str, torch.Tensor]) -> torch.Tensor:
    """(samples × modalities) bool: which modality of which sample was changed."""
    return torch.stack([(noisy[k] != clean[k]).flatten(1).any(1) for k in clean], dim=1)


def test_sum_reduction_sums_per_sample_and_averages_over_the_batch():
    target = {"a": torch.zeros(2, 3), "b": torch.zeros(2, 1, 2)}
    recon = {"a": torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]]), "b": torch.tensor([[[1.0, 1.0]], [[2.0, 0.0]]])}
    weights = {"a": 0.5, "b": 2.0}
    total, parts = reconstruction_loss(recon, target, weights, "sum")
    # a: per-sample sums 5 and 9 -> 7; b: 2 and 4 -> 3
    assert parts == {"recon_a": pytest.approx(7.0), "recon_b": pytest.approx(3.0)}
    assert float(total) == pytest.approx(0.5 * 7 + 2.0 * 3)
    total, parts = reconstruction_loss(recon, target, weights, "mean")
    # a: 14 / 6 elements; b: 6 / 4 elements
    assert parts == {"recon_a": pytest.approx(14 / 6), "recon_b": pytest.approx(1.5)}
    assert float(total) == pytest.approx(0.5 * 14 / 6 + 2.0 * 1.5)
    with pytest.raises(ConfigError, match="reduction 'max' unknown"):
        reconstruction_loss(recon, target, weights, "max")


def test_clean_prob_one_leaves_every_input_unchanged():
    clean = flat_batch()
    noisy = DenoisingOptions(noise_sigma=0.5, clean_prob=1.0).corrupt(clean, RANGES)
    assert all(torch.equal(noisy[k], clean[k]) for k in clean)


def test_clean_prob_zero_mode_one_perturbs_exactly_one_modality_per_sample():
    torch.manual_seed(0)
    clean = flat_batch()
    noisy = DenoisingOptions(noise_sigma=0.3, noise_mode="one", clean_prob=0.0).corrupt(clean, RANGES)
    assert torch.equal(noisy_rows(clean, noisy).sum(1), torch.ones(200, dtype=torch.long))
    assert all(torch.equal(clean[k], torch.full_like(clean[k], 0.5)) for k in clean), "the input was modified"


@pytest.mark.parametrize("mode", ["one", "all"])
def test_clean_prob_is_the_share_of_samples_left_clean(mode):
    clean = flat_batch(4000)
    gen = torch.Generator().manual_seed(1)
    noisy = DenoisingOptions(noise_sigma=0.3, noise_mode=mode, clean_prob=1 / 3).corrupt(clean, RANGES, gen)
    rows = noisy_rows(clean, noisy)
    untouched = (~rows.any(1)).float().mean()
    assert 0.30 < float(untouched) < 0.37
    per_sample = rows.sum(1)[rows.any(1)]
    assert torch.all(per_sample == (1 if mode == "one" else 2))


@pytest.mark.parametrize("mode", ["one", "all"])
def test_noise_modalities_restricts_where_the_noise_goes(mode):
    clean = flat_batch()
    opts = DenoisingOptions(noise_sigma=0.3, noise_mode=mode, noise_modalities=("trajectory",))
    noisy = opts.corrupt(clean, RANGES, torch.Generator().manual_seed(0))
    assert torch.equal(noisy["image"], clean["image"])
    assert noisy_rows(clean, noisy)[:, 1].all(), "every sample's trajectory should be noisy"


def test_corrupt_is_seeded():
    clean = flat_batch()
    opts = DenoisingOptions(noise_sigma=0.3, clean_prob=0.25)
    a = opts.corrupt(clean, RANGES, torch.Generator().manual_seed(5))
    b = opts.corrupt(clean, RANGES, torch.Generator().manual_seed(5))
    c = opts.corrupt(clean, RANGES, torch.Generator().manual_seed(6))
    assert all(torch.equal(a[k], b[k]) for k in clean)
    assert not all(torch.equal(a[k], c[k]) for k in clean)
    torch.manual_seed(3)
    d = opts.corrupt(clean, RANGES)
    torch.manual_seed(3)
    e = opts.corrupt(clean, RANGES)
    assert all(torch.equal(d[k], e[k]) for k in clean), "the global RNG, once seeded, gives the same noise"


def test_bad_noise_options_name_the_value_and_the_fix(toy):
    mods = toy.modalities
    with pytest.raises(ConfigError, match=r"clean_prob must be in \[0, 1\].*got 1.5"):
        build_model("gmcwd", mods, {"clean_prob": 1.5})
    with pytest.raises(ConfigError, match="noise_modalities names modality 'audio'; the dataset has image"):
        build_model("dgmc", mods, {"noise_modalities": ["audio"]})
    with pytest.raises(ConfigError, match="noise_modalities must be a non-empty list"):
        build_model("mdae", mods, {"noise_modalities": []})
    with pytest.raises(ConfigError, match="recon_reduction 'avg' unknown; use 'sum'"):
        build_model("dae", mods, {"recon_reduction": "avg"})
    with pytest.raises(ConfigError, match="classifier_input 'both' unknown"):
        build_model("gmcwd", mods, {"classifier_input": "both"})
    with pytest.raises(ConfigError, match="has no option 'clean_prob'"):
        build_model("vae", mods, {"clean_prob": 0.5})


def test_defaults_gmcwd_family_follows_the_thesis_scale_ae_baselines_keep_theirs(toy):
    for name in ("gmcwd", "dgmc"):
        o = build_model(name, toy.modalities, {}).options
        assert (o.recon_reduction, o.clean_prob, o.classifier_input) == ("sum", pytest.approx(0.5), "clean")
    for name in ("dae", "mdae", "cmdae", "cmdvae"):
        o = build_model(name, toy.modalities, {}).options
        assert (o.recon_reduction, o.clean_prob, o.noise_modalities) == ("mean", 0.0, None)


def test_sum_reduction_puts_the_kl_per_sample(toy):
    model = build_model("vae", toy.modalities, {"recon_reduction": "sum", "hidden": [16]}).eval()
    b = {k: v[:6] for k, v in toy.train.inputs.items()}
    with torch.no_grad():
        _, metrics = model.loss(b)
        mu, logvar = model.code(b, model.names).chunk(2, dim=-1)
    assert metrics["kl"] == pytest.approx(float(gaussian_kl(mu, logvar)), rel=1e-5)


@pytest.mark.parametrize("name", ["gmcwd", "dgmc"])
def test_history_logs_the_terms_and_their_ratio(name, toy):
    torch.manual_seed(0)
    model = build_model(name, toy.modalities, {"head_hidden": 32})
    history = fit_representation(model, toy.train, OptimConfig(epochs=1, batch_size=64), seed=0)
    record = history[0]
    assert {"contrastive", "recon", "recon_ratio"} <= set(record)
    recon = record["recon"] + record.get("recon_own", 0.0)
    # a mean of per-batch ratios: close to, not equal to, the ratio of the epoch means
    assert record["recon_ratio"] == pytest.approx(recon / record["contrastive"], rel=0.2)


def test_the_classifier_trains_on_clean_latents_unless_configured(toy):
    torch.manual_seed(0)
    model = build_model("gmcwd", toy.modalities, {"head_hidden": 32})
    calls = []
    real = model.encode

    def spy(inputs, present=None):
        calls.append({k: v.clone() for k, v in inputs.items()})
        return real(inputs, present)

    model.encode = spy
    fit_classifier(model, toy.train, 10, OptimConfig(epochs=1), seed=0)
    assert all(torch.equal(calls[0][k], toy.train.inputs[k]) for k in toy.train.inputs)

    noisy = build_model("gmcwd", toy.modalities, {"head_hidden": 32, "classifier_input": "noisy", "clean_prob": 0.0})
    noisy.load_state_dict(model.state_dict())
    gen = torch.Generator().manual_seed(0)
    z_noisy = encode_all(noisy, toy.train, view=lambda x: noisy.classifier_training_inputs(x, gen))
    assert not torch.allclose(z_noisy, encode_all(noisy, toy.train))


def test_the_thesis_config_reproduces_the_thesis_setting(toy):
    from pathlib import Path

    from robustmm.config import from_dict, load_yaml

    cfg = from_dict(load_yaml(Path(__file__).resolve().parents[1] / "configs" / "thesis.yaml"))
    o = build_model(cfg.model, toy.modalities, cfg.model_options).options
    assert (o.recon_reduction, o.clean_prob, o.noise_mode, o.noise_sigma) == ("sum", 0.0, "one", 0.5)
    assert o.recon_weights == {"image": 0.5, "trajectory": 0.5}
