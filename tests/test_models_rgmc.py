"""RGMC: odd-one-out labels, FGSM perturbation of the named modality, loss on logits, the fusion
against hand-computed examples, two-phase training, the reference pipeline and the o-detached
attack variant; DGMC's test-time path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from robustmm.attacks import make_cell
from robustmm.attacks.mask import decode_mask
from robustmm.config import OptimConfig
from robustmm.errors import ConfigError, TrainingError
from robustmm.evaluate import evaluate_pipeline
from robustmm.models import build_model
from robustmm.models import rgmc as rgmc_module
from robustmm.models.base import plan_for
from robustmm.models.rgmc import argmax_gate, fuse
from robustmm.objectives import compute_objectives, parse_objectives
from robustmm.train import Reporter, craft_batch, enter_phase, reference_pipeline, seed_everything, train_pipeline

SMALL = {"latent_dim": 8, "common_dim": 8, "head_hidden": 16, "odd_hidden": 16}


def batch_for(specs, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {s.name: torch.rand(n, *s.shape, generator=g) for s in specs}
    out["label"] = torch.arange(n) % 10
    return out


def crafted(model, batch, options, epoch=1, epochs=1):
    """The batch with the FGSM examples the model's plan crafts in `epoch` (RGMC's loss reads them)."""
    stage = plan_for("rgmc", {**SMALL, **options}, OptimConfig(epochs=epochs), OptimConfig()).stages[0]
    craft = stage.phase_at(epoch)[1].craft
    return {**batch, **craft_batch(model, batch, craft, torch.Generator().manual_seed(0))}


def test_fusion_matches_a_hand_computed_example():
    joint = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z1 = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    z2 = torch.tensor([[0.0, 3.0], [3.0, 0.0]])
    # sample 0: o says modality 1 is perturbed with 0.7, modality 2 with 0.2, none with 0.1
    # sample 1: none with 1.0
    p = torch.tensor([[0.7, 0.2, 0.1], [0.0, 0.0, 1.0]])
    out = fuse(joint, [z1, z2], p)
    # z_out = z_joint * p_none + z1 * p_2 + z2 * p_1
    expected0 = torch.tensor([1.0, 0.0]) * 0.1 + torch.tensor([2.0, 0.0]) * 0.2 + torch.tensor([0.0, 3.0]) * 0.7
    assert torch.allclose(out[0], expected0)
    assert torch.allclose(out[1], joint[1])


def test_fusion_with_three_modalities():
    joint, zs = torch.zeros(1, 2), [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 1.0]])]
    p = torch.tensor([[0.5, 0.3, 0.1, 0.1]])
    out = fuse(joint, zs, p)
    # weight of z_m = sum of the OTHER modalities' probabilities
    w = [0.3 + 0.1, 0.5 + 0.1, 0.5 + 0.3]
    assert torch.allclose(out, w[0] * zs[0] + w[1] * zs[1] + w[2] * zs[2])
    with pytest.raises(ValueError, match="expected"):
        fuse(joint, zs, torch.ones(1, 3) / 3)


def test_argmax_gate_drops_the_flagged_modality_or_uses_the_joint_latent():
    joint = torch.tensor([[9.0, 9.0], [9.0, 9.0], [9.0, 9.0]])
    z1, z2 = torch.ones(3, 2), 2 * torch.ones(3, 2)
    p = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    out = argmax_gate(joint, [z1, z2], p)
    assert torch.equal(out, torch.tensor([[2.0, 2.0], [1.0, 1.0], [9.0, 9.0]]))


def test_odd_labels_follow_clean_prob(toy):
    torch.manual_seed(0)
    model = build_model("rgmc", toy.modalities, {**SMALL, "perturb_against": "current", "clean_prob": 0.5})
    labels = model.odd_labels(4000, torch.device("cpu"))
    counts = torch.bincount(labels, minlength=3).float() / 4000
    assert abs(counts[2] - 0.5) < 0.03 and abs(counts[0] - 0.25) < 0.03 and abs(counts[1] - 0.25) < 0.03
    model = build_model("rgmc", toy.modalities, {**SMALL, "perturb_against": "current", "clean_prob": 0.0})
    assert int((model.odd_labels(500, torch.device("cpu")) == 2).sum()) == 0
    default = build_model("rgmc", toy.modalities, {**SMALL, "perturb_against": "current"})
    assert default.clean_prob == pytest.approx(1 / 3)


def test_perturb_changes_only_the_named_modality_by_fgsm(toy):
    torch.manual_seed(0)
    model = build_model("rgmc", toy.modalities, {**SMALL, "perturb_against": "current", "fgsm_eps": 0.1})
    b = batch_for(toy.modalities, n=6)
    clean = {n: b[n] for n in model.names}
    which = torch.tensor([0, 1, 2, 0, 1, 2])
    adversarial = crafted(model, b, {"perturb_against": "current", "fgsm_eps": 0.1})["adversarial"]
    out = model.pick(clean, adversarial, which)
    for k, name in enumerate(model.names):
        delta = (out[name] - clean[name]).flatten(1)
        hit = which == k
        assert torch.equal(out[name][~hit], clean[name][~hit]), f"{name} changed where it was not named"
        assert delta[hit].abs().max() <= 0.1 + 1e-6 and delta[hit].abs().max() > 0.05
        assert out[name].min() >= 0 and out[name].max() <= 1
    # the FGSM direction is the sign of the gradient of the current L_GMC at the clean point
    x = {n: v.clone().requires_grad_(True) for n, v in clean.items()}
    joint, uni = model.latents(x)
    g = torch.autograd.grad(rgmc_module.gmc_contrastive(joint, uni, model.options.tau), x["image"])[0]
    expected = (clean["image"][0] + 0.1 * g[0].sign()).clamp(0, 1)
    assert torch.allclose(out["image"][0], expected)


def test_odd_one_out_loss_is_cross_entropy_on_logits(toy, monkeypatch):
    seen = {}
    real = F.cross_entropy

    def spy(logits, target, *args, **kwargs):
        if logits.shape[1] == 3:
            seen["logits"], seen["target"] = logits.detach().clone(), target.clone()
        return real(logits, target, *args, **kwargs)

    monkeypatch.setattr(rgmc_module.F, "cross_entropy", spy)
    torch.manual_seed(0)
    model = build_model("rgmc", toy.modalities, {**SMALL, "perturb_against": "current"})
    raw = {}
    model.odd.register_forward_hook(lambda module, args, out: raw.update(out=out.detach().clone()))
    loss, metrics = model.loss(crafted(model, batch_for(toy.modalities), {"perturb_against": "current"}))
    loss.backward()
    assert "logits" in seen, "the odd-one-out term is not a cross-entropy over M+1 logits"
    assert torch.equal(seen["logits"], raw["out"]), "the cross-entropy must get o's raw output, not its softmax"
    assert set(seen["target"].tolist()) <= {0, 1, 2}
    assert {"contrastive", "odd", "odd_accuracy"} <= set(metrics)
    assert model.odd[0].weight.grad is not None


def test_two_phase_training_switches_the_loss(toy):
    torch.manual_seed(0)
    model = build_model("rgmc", toy.modalities, {**SMALL, "perturb_against": "current", "two_phase": True})
    b = batch_for(toy.modalities)
    options = {"perturb_against": "current", "two_phase": True}
    stage = plan_for("rgmc", {**SMALL, **options}, OptimConfig(epochs=4), OptimConfig()).stages[0]
    assert enter_phase(model, stage, 1, toy.train).craft is None, "phase 1 trains L_GMC alone: no FGSM examples"
    loss, metrics = model.loss(b)
    assert "odd" not in metrics and "contrastive" in metrics
    enter_phase(model, stage, 3, toy.train)
    loss, metrics = model.loss(crafted(model, b, options, epoch=3, epochs=4))
    assert "contrastive" not in metrics and "odd" in metrics
    loss.backward()
    assert all(p.grad is None for p in model.encoders.parameters()), "phase 2 must not train the encoders"
    assert model.odd[0].weight.grad is not None


def test_option_errors(toy):
    for bad, match in [
        ({"perturb_against": "nobody"}, "perturb_against"),
        ({"gating": "max"}, "gating"),
        ({"clean_prob": 1.0}, "clean_prob"),
        ({"fgsm_eps": 0.0}, "fgsm_eps"),
        ({"phase_split": 1.5}, "phase_split"),
    ]:
        with pytest.raises(ConfigError, match=match):
            build_model("rgmc", toy.modalities, bad)
    model = build_model("rgmc", toy.modalities, SMALL)
    with pytest.raises(TrainingError, match="reference pipeline"):
        crafted(model, batch_for(toy.modalities), {})
    with pytest.raises(ConfigError, match="FGSM examples"):
        model.loss(batch_for(toy.modalities))


def _fit(toy, options, seed=0):
    seed_everything(seed)
    model = build_model("rgmc", toy.modalities, {**SMALL, **options})
    cfg = OptimConfig(epochs=1, batch_size=64, lr=2e-3)
    return train_pipeline(model, toy, cfg, OptimConfig(epochs=2, batch_size=64), seed=seed)


def test_frozen_reference_is_trained_first_and_reproducible(toy):
    stages = []
    seed_everything(0)
    model = build_model("rgmc", toy.modalities, {**SMALL, "reference_epochs": 1, "reference_classifier_epochs": 1})
    cfg = OptimConfig(epochs=1, batch_size=64, lr=2e-3)
    a = train_pipeline(
        model, toy, cfg, OptimConfig(epochs=1, batch_size=64), seed=0, on_epoch=lambda s, e, m: stages.append(s)
    )
    assert stages == ["reference", "reference-classifier", "representation", "classifier"]
    plan = plan_for("rgmc", {**SMALL, "reference_epochs": 1, "reference_classifier_epochs": 1}, cfg, cfg)
    assert plan.reference is not None and plan.reference.model == "gmc"
    ref = reference_pipeline(plan.reference, a.model, toy, 0, Reporter())
    assert not any(p.requires_grad for p in ref.parameters()) and not ref.training
    assert not any(k.startswith("ref") for k in a.model.state_dict()), "the reference is not model state"
    b = _fit(toy, {"reference_epochs": 1, "reference_classifier_epochs": 1})
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_attack_variant_rows_and_objectives_take_the_worst(toy):
    pipe = _fit(toy, {"perturb_against": "current"})
    cells = [make_cell("clean"), make_cell("missing", ("image",)), make_cell("fgsm", ("image",), eps=0.2)]
    rows = evaluate_pipeline(pipe.model, pipe.classifier, toy, cells, seed=0, labels={"model": "rgmc", "dataset": "t"})
    labels = [(r["model"], r["perturbation"]) for r in rows]
    assert labels == [("rgmc", "clean"), ("rgmc", "missing"), ("rgmc", "fgsm"), ("rgmc[o-detached]", "fgsm")]
    assert pipe.model.detach_odd is False
    df = pd.DataFrame(rows)
    # per sample: correct clean, under FGSM and under FGSM through the detached variant
    masks = [decode_mask(r["correct_mask"], r["n"]) for r in rows if r["perturbation"] in ("clean", "fgsm")]
    worst = float(np.logical_and.reduce(masks).mean())
    assert worst <= min(r["accuracy"] for r in rows if r["perturbation"] == "fgsm")
    assert rows[2]["worst_case_accuracy"] == pytest.approx(worst)  # the rows carry it, on the model's row
    assert np.isnan(rows[3]["worst_case_accuracy"]) and rows[0]["worst_case_accuracy"] == rows[0]["accuracy"]
    objectives = parse_objectives([{"name": "mean_robust_accuracy", "attack": "fgsm"}, "clean_accuracy"])
    values = compute_objectives(objectives, df)
    assert values["mean_robust_accuracy_fgsm"] == pytest.approx(worst)
    assert values["clean_accuracy"] == pytest.approx(rows[0]["accuracy"])


def test_objectives_without_masks_score_each_cell_at_the_worse_variant():
    """Rows written before masks: the fallback, a running minimum over ε and over variants."""

    def row(model, perturbation, accuracy, eps=float("nan")):
        return {"model": model, "dataset": "t", "seed": 0, "perturbation": perturbation, "target": "image",
                "eps": eps, "alpha": float("nan"), "sigma": float("nan"), "steps": float("nan"),
                "restarts": float("nan"), "accuracy": accuracy}  # fmt: skip

    rows = [
        row("rgmc", "clean", 0.9),
        row("rgmc", "fgsm", 0.8, 0.1),
        row("rgmc[o-detached]", "fgsm", 0.3, 0.1),
        row("rgmc", "fgsm", 0.2, 0.2),
        row("rgmc[o-detached]", "fgsm", 0.6, 0.2),
    ]
    objectives = parse_objectives([{"name": "mean_robust_accuracy", "attack": "fgsm"}, "clean_accuracy"])
    values = compute_objectives(objectives, pd.DataFrame(rows))
    assert values["mean_robust_accuracy_fgsm"] == pytest.approx((0.3 + 0.2) / 2)
    assert values["clean_accuracy"] == pytest.approx(0.9)


def test_detached_variant_stops_the_gradient_through_o(toy):
    torch.manual_seed(0)
    model = build_model("rgmc", toy.modalities, {**SMALL, "perturb_against": "current"}).eval()
    b = batch_for(toy.modalities)
    x = {n: b[n].clone().requires_grad_(True) for n in model.names}
    g_full = torch.autograd.grad(model.encode(x).sum(), x["image"])[0]
    with model.attack_variants()["o-detached"]():
        z = model.encode(x)
        g_detached = torch.autograd.grad(z.sum(), x["image"])[0]
        joint, uni = model.latents(x)
        p = F.softmax(model.odd(torch.cat(uni, 1)), 1).detach()
        g_expected = torch.autograd.grad(fuse(joint, uni, p).sum(), x["image"])[0]
    assert torch.allclose(g_detached, g_expected) and not torch.allclose(g_full, g_detached)
    assert torch.allclose(z, model.encode(x)), "detaching must not change the latent's value"


def test_dgmc_encodes_its_own_reconstructions(toy):
    torch.manual_seed(0)
    model = build_model("dgmc", toy.modalities, {"latent_dim": 8, "common_dim": 8, "head_hidden": 16})
    b = batch_for(toy.modalities)
    loss, metrics = model.loss(b)
    loss.backward()
    assert "recon_own" in metrics and model.decoders["image"].net[0].weight.grad is not None
    model.eval()
    with torch.no_grad():
        rebuilt = {n: model.decoders[n](model.reproject(model.project(model.encoders[n](b[n])))) for n in model.names}
        z_img = model.project(model.encoders["image"](rebuilt["image"]))
        assert torch.allclose(model.encode(b, present=("image",)), z_img, atol=1e-6)
        assert torch.allclose(model.encode(b), model.project(model.joint_encoder(rebuilt)), atol=1e-6)
        model.train()
        assert torch.allclose(model.encode(b), model.joint_latent(b), atol=1e-6), "training uses the plain path"
