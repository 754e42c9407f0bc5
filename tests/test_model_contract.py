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
from robustmm.data.base import ModalitySpec, MultimodalDataset
from robustmm.evaluate import evaluate_pipeline
from robustmm.models import MODELS, build_model
from robustmm.models.base import base_label, plan_for
from robustmm.models.plan import ModelStage
from robustmm.train import craft_batch, seed_everything, train_pipeline

TINY = {
    "latent_dim": 8,
    "common_dim": 8,
    "head_hidden": 16,
    "hidden": (32,),
    "odd_hidden": 16,
    "reference_epochs": 1,
    "reference_classifier_epochs": 1,
}
IMAGE = ModalitySpec("image", "image", (1, 28, 28))
TRAJ = ModalitySpec("trajectory", "vector", (200,))
EXTRA = ModalitySpec("extra", "vector", (12,))


def tiny_options(name: str) -> dict:
    cls = MODELS.get(name).cls
    fields = {f.name for f in dataclasses.fields(cls.Options)}
    tiny = {**TINY, "latent_dim": 12} if cls.own_head else TINY  # orthonormal rows need width ≥ 10 classes
    return {k: v for k, v in tiny.items() if k in fields}


def trained_history(pipe) -> list[dict]:
    """The epochs of the stage that trained the model: the raw-input probe has only its classifier."""
    return pipe.history["representation"] or pipe.history["classifier"]


def fit(name: str, ds: MultimodalDataset, seed: int = 0):
    seed_everything(seed)
    model = build_model(name, ds.modalities, tiny_options(name))
    cfg = OptimConfig(epochs=1, batch_size=32, lr=2e-3)
    return train_pipeline(model, ds, cfg, OptimConfig(epochs=1, batch_size=32), seed=seed)


@pytest.fixture
def small(toy):
    train, test = toy.train.subset(slice(0, 96)), toy.test.subset(slice(0, 32))
    return MultimodalDataset("toy", toy.modalities, 10, train, test, validation=toy.validation.subset(slice(0, 32)))


@pytest.mark.parametrize("name", MODELS.names())
def test_summary_is_one_line(name):
    summary = MODELS.get(name).summary
    assert summary and "\n" not in summary and len(summary) < 120


@pytest.mark.parametrize("name", MODELS.names())
def test_train_encode_classify_attack(name, small):
    pipe = fit(name, small)
    model = pipe.model
    assert not model.training and all(not p.requires_grad for p in model.parameters())
    assert math.isfinite(trained_history(pipe)[-1]["loss"])
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


SOUND = ModalitySpec("sound", "sound", (1, 32, 128))
RGB = ModalitySpec("svhn", "rgb", (3, 32, 32))
SPEC_SETS = {"mhd3": (IMAGE, TRAJ, SOUND), "mnist_svhn": (IMAGE, RGB), "with_vector": (IMAGE, TRAJ, EXTRA)}


@pytest.mark.parametrize("specs_name", SPEC_SETS)
@pytest.mark.parametrize("name", MODELS.names())
def test_every_kind_trains_and_encodes_every_subset(name, specs_name):
    """A training step on 2-3 modalities of every kind reaches every parameter with a finite
    gradient; encode is deterministic on every non-empty subset."""
    specs = SPEC_SETS[specs_name]
    g = torch.Generator().manual_seed(0)
    batch = {s.name: torch.rand(6, *s.shape, generator=g) for s in specs}
    batch["label"] = torch.arange(6) % 10
    torch.manual_seed(0)
    options = tiny_options(name)
    if MODELS.get(name).cls.Options().__dict__.get("perturb_against") == "frozen":
        options["perturb_against"] = "current"  # the frozen reference needs a trained pipeline: tested above
    model = build_model(name, specs, options)
    stage = plan_for(name, options, OptimConfig(epochs=1), OptimConfig(epochs=1)).stages[0]
    trains = isinstance(stage, ModelStage)  # the raw-input probe has no representation stage
    if trains and stage.phases[0].craft is not None:  # RGMC's loss reads the batch's FGSM examples
        batch.update(craft_batch(model, batch, stage.phases[0].craft, torch.Generator().manual_seed(0)))
    loss, metrics = model.loss(batch)
    if trains:
        loss.backward()
    assert math.isfinite(float(loss.detach())) and all(isinstance(v, float) for v in metrics.values())
    dead = [n for n, w in model.named_parameters() if w.grad is None or not torch.isfinite(w.grad).all()]
    assert not dead, f"no gradient reaches {dead}"
    model.eval()
    names = [s.name for s in specs]
    with torch.no_grad():
        for r in range(1, len(names) + 1):
            for subset in combinations(names, r):
                z = model.encode(batch, present=subset)
                assert z.shape == (6, model.latent_dim) and torch.isfinite(z).all(), subset
                assert torch.equal(z, model.encode(batch, present=subset)), "encode is not deterministic"


@pytest.mark.parametrize("name", MODELS.names())
def test_same_seed_same_model(name, small):
    a, b = fit(name, small, seed=1), fit(name, small, seed=1)
    assert trained_history(a)[0]["loss"] == trained_history(b)[0]["loss"]
    # the model too: an own-head model's classifier has no parameters to compare
    for pa, pb in zip(
        (*a.model.parameters(), *a.classifier.parameters()),
        (*b.model.parameters(), *b.classifier.parameters()),
        strict=True,
    ):
        assert torch.equal(pa, pb)
