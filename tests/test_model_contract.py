"""Every registered model, through the whole cycle: train -> encode every subset of modalities ->
classify -> attack, on 2 and 3 modalities, reproducibly. Driven by the registry, so a new model
is tested the moment it is registered."""

from __future__ import annotations

import dataclasses
import math
from itertools import combinations

import pytest
import torch

from robustmm.attacks import make_cell
from robustmm.config import OptimConfig
from robustmm.data.base import ModalitySpec, MultimodalDataset, Split
from robustmm.evaluate import evaluate_pipeline
from robustmm.models import MODELS, build_model
from robustmm.models.base import base_label
from robustmm.train import seed_everything, train_pipeline

TINY = {
    "latent_dim": 8,
    "common_dim": 8,
    "head_hidden": 16,
    "hidden": (32,),
    "odd_hidden": 16,
    "reference_epochs": 1,
    "reference_classifier_epochs": 1,
}
EXTRA = ModalitySpec("extra", "vector", (12,))


def tiny_options(name: str) -> dict:
    fields = {f.name for f in dataclasses.fields(MODELS.get(name).cls.Options)}
    return {k: v for k, v in TINY.items() if k in fields}


def with_third_modality(ds: MultimodalDataset) -> MultimodalDataset:
    g = torch.Generator().manual_seed(5)
    protos = torch.rand(10, 12, generator=g)

    def add(split: Split) -> Split:
        extra = (protos[split.labels] + 0.2 * torch.randn(len(split), 12, generator=g)).clamp(0, 1)
        return Split({**split.inputs, "extra": extra}, split.labels)

    return MultimodalDataset("toy3", (*ds.modalities, EXTRA), 10, add(ds.train), add(ds.test))


def fit(name: str, ds: MultimodalDataset, seed: int = 0):
    seed_everything(seed)
    model = build_model(name, ds.modalities, tiny_options(name))
    cfg = OptimConfig(epochs=1, batch_size=32, lr=2e-3)
    return train_pipeline(model, ds, cfg, OptimConfig(epochs=1, batch_size=32), seed=seed)


@pytest.fixture
def small(toy):
    return MultimodalDataset("toy", toy.modalities, 10, toy.train.subset(slice(0, 96)), toy.test.subset(slice(0, 32)))


@pytest.mark.parametrize("name", MODELS.names())
def test_summary_is_one_line(name):
    summary = MODELS.get(name).summary
    assert summary and "\n" not in summary and len(summary) < 120


@pytest.mark.parametrize("name", MODELS.names())
def test_train_encode_classify_attack(name, small):
    pipe = fit(name, small)
    model = pipe.model
    assert not model.training and all(not p.requires_grad for p in model.parameters())
    assert math.isfinite(pipe.history["representation"][-1]["loss"])
    x = {k: v[:5] for k, v in small.test.inputs.items()}
    for r in (1, 2):
        for subset in combinations(small.modality_names, r):
            z = model.encode(x, present=subset)
            assert z.shape == (5, model.latent_dim) and torch.isfinite(z).all(), subset
    cells = [
        make_cell("clean"),
        *[make_cell("missing", (m,)) for m in small.modality_names],
        make_cell("gaussian", ("trajectory",), sigma=0.5),
        make_cell("fgsm", ("image",), eps=0.1),
        make_cell("pgd", ("trajectory",), eps=0.1, alpha=0.05, steps=2),
    ]
    rows = evaluate_pipeline(model, pipe.classifier, small, cells, seed=0, labels={"model": name, "dataset": "toy"})
    primary = [r for r in rows if r["model"] == name]
    assert [r["perturbation"] for r in primary] == ["clean", "missing", "missing", "gaussian", "fgsm", "pgd"]
    assert all(base_label(r["model"]) == name for r in rows)
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["n"] == len(small.test) for r in rows)


@pytest.mark.parametrize("name", MODELS.names())
def test_three_modalities_train_and_encode_every_subset(name, small):
    ds = with_third_modality(small)
    torch.manual_seed(0)
    model = build_model(name, ds.modalities, tiny_options(name))
    if model.reference_request() is not None:
        model = build_model(name, ds.modalities, {**tiny_options(name), "perturb_against": "current"})
    batch = {k: v[:8] for k, v in ds.train.inputs.items()}
    batch["label"] = ds.train.labels[:8]
    loss, metrics = model.loss(batch)
    loss.backward()
    assert math.isfinite(float(loss.detach())) and all(isinstance(v, float) for v in metrics.values())
    model.eval()
    for r in range(1, 4):
        for subset in combinations(ds.modality_names, r):
            z = model.encode(batch, present=subset)
            assert z.shape == (8, model.latent_dim) and torch.isfinite(z).all(), subset


@pytest.mark.parametrize("name", MODELS.names())
def test_same_seed_same_model(name, small):
    a, b = fit(name, small, seed=1), fit(name, small, seed=1)
    assert a.history["representation"][0]["loss"] == b.history["representation"][0]["loss"]
    for pa, pb in zip(a.classifier.parameters(), b.classifier.parameters(), strict=True):
        assert torch.equal(pa, pb)
