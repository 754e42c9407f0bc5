"""The raw-input baseline `raw`: the classifier on the flattened inputs, trained with the
classifier's budget, attacked end to end through the identity representation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustmm.attacks import make_cell
from robustmm.config import OptimConfig
from robustmm.errors import ConfigError
from robustmm.evaluate import evaluate_pipeline
from robustmm.models import MODELS, build_model
from robustmm.models.base import plan_for
from robustmm.train import seed_everything, train_pipeline


def fit(toy, **options):
    seed_everything(0)
    model = build_model("raw", toy.modalities, options)
    return train_pipeline(model, toy, OptimConfig(epochs=3), OptimConfig(epochs=5, batch_size=64), seed=0)


def accuracies(pipe, toy, cells) -> dict[str, float]:
    rows = evaluate_pipeline(pipe.model, pipe.classifier, toy, cells, seed=0, labels={"model": "raw"})
    return {f"{r['perturbation']}[{r['target']}]@{r['eps']:g}": r["accuracy"] for r in rows}


def test_registered_without_parameters_or_representation_stage(toy):
    assert "raw" in MODELS and "baseline" in MODELS.get("raw").summary
    model = build_model("raw", toy.modalities, {"modalities": ["trajectory"]})
    assert list(model.parameters()) == [] and model.latent_dim == 200
    plan = plan_for("raw", {"modalities": ["trajectory"]}, OptimConfig(epochs=7), OptimConfig(epochs=5))
    assert plan.totals() == [("classifier", 5)]  # the classifier's budget only
    assert build_model("raw", toy.modalities).latent_dim == 28 * 28 + 200


@pytest.mark.parametrize(
    "options, message",
    [
        (
            {"modalities": ["sound"]},
            "model.modalities \\['sound'\\] must name each modality once, from image, traj",
        ),
        ({"modalities": ["image", "image"]}, "must name each modality once"),
        ({"hidden": [0]}, "model.hidden must be a list of layer widths ≥ 1"),
        ({"latent_dim": 8}, "model 'raw' has no option 'latent_dim'"),
    ],
)
def test_bad_options_are_one_line_errors(toy, options, message):
    with pytest.raises(ConfigError, match=message):
        build_model("raw", toy.modalities, options)


def test_linear_probe_learns_the_toy_problem_and_gradient_attacks_break_it(toy):
    pipe = fit(toy)
    assert pipe.history["representation"] == [] and len(pipe.history["classifier"]) == 5
    linear = [m for m in pipe.classifier.modules() if isinstance(m, nn.Linear)]
    assert len(linear) == 1 and linear[0].in_features == 28 * 28 + 200  # a linear probe
    cells = [
        make_cell("clean"),
        make_cell("fgsm", ("image",), eps=0.3),
        make_cell("pgd", ("image",), eps=0.3, alpha=0.1, steps=5),
    ]
    acc = accuracies(pipe, toy, cells)
    assert acc["clean[none]@nan"] >= 0.9
    assert acc["fgsm[image]@0.3"] < acc["clean[none]@nan"] - 0.3
    assert acc["pgd[image]@0.3"] < acc["clean[none]@nan"] - 0.3


def test_small_mlp_has_its_hidden_layer_and_is_attackable(toy):
    pipe = fit(toy, hidden=[32])
    widths = [m.out_features for m in pipe.classifier.modules() if isinstance(m, nn.Linear)]
    assert widths == [32, 10]
    acc = accuracies(pipe, toy, [make_cell("clean"), make_cell("pgd", ("image",), eps=0.3, alpha=0.1, steps=5)])
    assert acc["clean[none]@nan"] >= 0.9 and acc["pgd[image]@0.3"] < acc["clean[none]@nan"] - 0.3


def test_a_modality_the_probe_does_not_read_cannot_change_its_predictions(toy):
    pipe = fit(toy, modalities=["image"])
    cells = [
        make_cell("clean"),
        make_cell("missing", ("trajectory",)),
        make_cell("fgsm", ("trajectory",), eps=0.3),
        make_cell("pgd", ("trajectory",), eps=0.3, alpha=0.1, steps=3),
        make_cell("pgd", ("image", "trajectory"), eps=0.3, alpha=0.1, steps=3),
        make_cell("missing", ("image",)),
    ]
    acc = accuracies(pipe, toy, cells)
    clean = acc["clean[none]@nan"]
    assert clean >= 0.9
    assert acc["missing[trajectory]@nan"] == acc["fgsm[trajectory]@0.3"] == acc["pgd[trajectory]@0.3"] == clean
    assert acc["pgd[image+trajectory]@0.3"] < clean - 0.3  # the image still reaches the logits jointly
    assert acc["missing[image]@nan"] <= 0.2  # nothing left to read: about chance


def test_an_absent_modality_is_zeros_and_gradients_reach_the_inputs(toy):
    model = build_model("raw", toy.modalities).eval()
    x = {k: v[:4].clone().requires_grad_(True) for k, v in toy.test.inputs.items()}
    z = model.encode(x, present=("trajectory",))
    assert torch.equal(z[:, : 28 * 28], torch.zeros(4, 28 * 28)) and torch.equal(z[:, 28 * 28 :], x["trajectory"])
    model.encode(x).pow(2).sum().backward()
    assert torch.equal(x["image"].grad, 2 * x["image"].detach())
