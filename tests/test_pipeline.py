"""Train -> freeze -> evaluate on a small learnable problem; determinism; NaN handling."""

from __future__ import annotations

import math

import pytest
import torch

from robustmm.attacks import GRIDS
from robustmm.config import OptimConfig
from robustmm.errors import ConfigError, TrainingError
from robustmm.evaluate import evaluate_pipeline
from robustmm.models import build_model
from robustmm.models.base import Chain
from robustmm.train import seed_everything, train_pipeline

SMALL = {"latent_dim": 16, "common_dim": 16, "head_hidden": 64}


def fit(toy, name="gmcwd", seed=0, epochs=4, lr=2e-3):
    seed_everything(seed)
    model = build_model(name, toy.modalities, SMALL)
    cfg = OptimConfig(epochs=epochs, batch_size=32, lr=lr)
    return train_pipeline(model, toy, cfg, OptimConfig(epochs=15, batch_size=32, lr=3e-3), seed=seed)


def evaluate_smoke(pipe, toy, **kwargs):
    cells = GRIDS.get("smoke")(toy.modality_names)
    labels = {"model": "gmcwd", "dataset": "toy"}
    return evaluate_pipeline(pipe.model, pipe.classifier, toy, cells, seed=0, labels=labels, **kwargs)


def test_pipeline_learns_and_is_frozen(toy):
    pipe = fit(toy)
    assert len(pipe.history["representation"]) == 4 and len(pipe.history["classifier"]) == 15
    assert pipe.history["representation"][-1]["loss"] < pipe.history["representation"][0]["loss"]
    assert all(not p.requires_grad for p in pipe.model.parameters())
    assert not pipe.model.training
    rows = evaluate_smoke(pipe, toy)
    clean = next(r for r in rows if r["perturbation"] == "clean")
    assert clean["accuracy"] > 0.8 and clean["n"] == len(toy.test)
    assert {r["split"] for r in rows} == {"test"}
    pgd = sorted((r["eps"], r["accuracy"]) for r in rows if r["perturbation"] == "pgd" and r["target"] == "image")
    assert pgd[-1][1] <= pgd[0][1] <= clean["accuracy"]
    assert {r["model"] for r in rows} == {"gmcwd"} and {r["seed"] for r in rows} == {0}


def test_same_seed_same_numbers_other_seed_other_numbers(toy):
    a, b, c = fit(toy, seed=3, epochs=1), fit(toy, seed=3, epochs=1), fit(toy, seed=4, epochs=1)
    assert a.history["representation"][0]["loss"] == b.history["representation"][0]["loss"]
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert a.history["representation"][0]["loss"] != c.history["representation"][0]["loss"]


def test_diverging_loss_is_a_clear_training_error(toy):
    with pytest.raises(TrainingError, match="loss became (nan|inf)"):
        fit(toy, name="gmc", epochs=1, lr=1e30)


def test_max_samples_limits_evaluation(toy):
    pipe = fit(toy, epochs=1)
    rows = evaluate_smoke(pipe, toy, max_samples=50)
    assert {r["n"] for r in rows} == {50}
    assert all(0.0 <= r["accuracy"] <= 1.0 and not math.isnan(r["accuracy"]) for r in rows)


def test_split_chooses_the_evaluated_samples(toy):
    pipe = fit(toy, epochs=1)
    rows = evaluate_smoke(pipe, toy, split="validation")
    assert {r["split"] for r in rows} == {"validation"} and {r["n"] for r in rows} == {len(toy.validation)}
    clean = next(r for r in rows if r["perturbation"] == "clean")
    chain = Chain(pipe.model, pipe.classifier)
    with torch.no_grad():
        correct = int((chain(toy.validation.inputs).argmax(1) == toy.validation.labels).sum())
    assert clean["correct"] == correct
    with pytest.raises(ConfigError, match="unknown split 'train'; evaluate on one of test, validation"):
        evaluate_smoke(pipe, toy, split="train")
