"""CRMT family (jt, ojt, crmt-jt, crmt-at, crmt-mix): the margin regulariser of eq. 12 and the
step-1/step-2 losses against hand computations, orthonormal heads, the Lipschitz estimates τ̃
(exact for linear encoders, per class and per sample), the certified radius against L2-PGD,
step-2 freezing (BatchNorm included), the rounds schedule, CRMT-AT's joint L2 examples and
CRMT-Mix's mixed loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustmm.attacks import ATTACKS
from robustmm.config import OptimConfig
from robustmm.data.base import ModalitySpec, MultimodalDataset, Split
from robustmm.errors import ConfigError
from robustmm.models import build_model
from robustmm.models.base import Chain, OwnHead, plan_for
from robustmm.models.crmt import margin_regulariser, runner_up
from robustmm.train import craft_batch, enter_phase, fit_representation, train_pipeline

U = ModalitySpec("u", "vector", (6,))
V = ModalitySpec("v", "vector", (5,))
WIDE = (ModalitySpec("u", "vector", (6,), (-100.0, 100.0)), ModalitySpec("v", "vector", (5,), (-100.0, 100.0)))
SOUND = ModalitySpec("s", "sound", (1, 8, 8))
K = 3


def blobs(specs, n: int, k: int = K, seed: int = 0) -> Split:
    """Class-dependent blobs in [0, 1] in every modality: a learnable, tiny problem."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    inputs = {}
    for s in specs:
        protos = torch.rand(k, *s.shape, generator=g)
        inputs[s.name] = (protos[y] + 0.1 * torch.randn(n, *s.shape, generator=g)).clamp(0, 1)
    return Split(inputs, y)


def dataset(specs, n: int = 64, k: int = K) -> MultimodalDataset:
    train, test = blobs(specs, n, k, 0), blobs(specs, 16, k, 1)
    return MultimodalDataset("tiny", tuple(specs), k, train, test, validation=blobs(specs, 16, k, 2))


def batch_of(split: Split) -> dict[str, torch.Tensor]:
    return {**split.inputs, "label": split.labels}


def schedule(name: str, options: dict, epochs: int):
    """The representation stage of the model's plan for `epochs` step-1 epochs."""
    return plan_for(name, options, OptimConfig(epochs=epochs), OptimConfig()).stages[0]


def steps(stage) -> list[int]:
    """The CRMT step of each epoch of a stage."""
    return [stage.phase_at(e)[1].settings["step"] for e in range(1, stage.epochs + 1)]


def ref_margin(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 12 by its definition, sample by sample: log Σ_m Σ_{k≠y} exp(s_k^(m) − s_y^(m))."""
    out = []
    for i in range(scores.shape[0]):
        y = int(labels[i])
        total = sum(
            math.exp(float(scores[i, m, k] - scores[i, m, y]))
            for m in range(scores.shape[1])
            for k in range(scores.shape[2])
            if k != y
        )
        out.append(math.log(total))
    return torch.tensor(out)


def freeze(model):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def bn_modules(model) -> list[nn.Module]:
    return [m for m in model.encoders.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


# ---------------------------------------------------------------------------------- eq. 12 and losses


def test_margin_regulariser_matches_a_hand_computed_example():
    # N=2 samples, M=2 modalities, K=3 classes
    scores = torch.tensor(
        [
            [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]],
            [[0.2, 0.1, -0.4], [1.5, 0.0, 0.3]],
        ]
    )
    labels = torch.tensor([1, 0])
    e = math.exp
    # sample 0, y=1: modality 1 scores (1, 2, .5) -> k=0: 1-2, k=2: .5-2; modality 2 (0, -1, 3) -> 0+1, 3+1
    expected0 = math.log(e(1 - 2) + e(0.5 - 2) + e(0 - (-1)) + e(3 - (-1)))
    # sample 1, y=0: modality 1 (.2, .1, -.4) -> .1-.2, -.4-.2; modality 2 (1.5, 0, .3) -> 0-1.5, .3-1.5
    expected1 = math.log(e(0.1 - 0.2) + e(-0.4 - 0.2) + e(0 - 1.5) + e(0.3 - 1.5))
    out = margin_regulariser(scores, labels)
    assert out.shape == (2,)
    assert out[0].item() == pytest.approx(expected0, rel=1e-6)
    assert out[1].item() == pytest.approx(expected1, rel=1e-6)
    # large scores: the logsumexp form stays finite and exact where a naive exp overflows
    big = scores * 100
    assert torch.isfinite(margin_regulariser(big, labels)).all()
    assert margin_regulariser(big, labels)[0].item() == pytest.approx(400.0 + math.log1p(e(-100)), rel=1e-6)
    # random case against the definition
    g = torch.Generator().manual_seed(0)
    rnd, lab = torch.randn(7, 3, 4, generator=g), torch.randint(0, 4, (7,), generator=g)
    assert torch.allclose(margin_regulariser(rnd, lab), ref_margin(rnd, lab), rtol=1e-5, atol=1e-6)


def test_runner_up_is_the_best_other_class():
    logits = torch.tensor([[3.0, 1.0, 2.0], [3.0, 1.0, 2.0], [0.0, 5.0, 4.0]])
    assert runner_up(logits, torch.tensor([0, 2, 0])).tolist() == [2, 0, 1]


def test_margin_floor_bounds_the_regulariser_below():
    """Without a floor L1 → −∞ as the margins grow (step 1 diverges by inflating φ); with the
    public code's 1e-5 inside the log each sample's term is log(Σ exp(·) + 1e-5) ≥ log 1e-5."""
    labels = torch.tensor([0, 1])
    scores = torch.tensor([[[2.0, 0.5, -1.0], [1.0, 0.0, 0.3]], [[0.1, 0.2, 0.0], [1.0, 2.0, 0.5]]])
    plain = margin_regulariser(scores, labels)
    floored = margin_regulariser(scores, labels, 1e-5)
    assert torch.allclose(floored, torch.log(plain.exp() + 1e-5))
    huge = margin_regulariser(1e4 * scores, labels, 1e-5)
    assert torch.allclose(huge, torch.full_like(huge, math.log(1e-5)))
    assert (margin_regulariser(1e4 * scores, labels) <= -1000).all()


def test_crmt_jt_step1_loss_is_ce_plus_rho_margin():
    torch.manual_seed(0)
    model = build_model("crmt-jt", (U, V), {"latent_dim": 8, "rho": 0.7, "margin_floor": 0.0}, num_classes=K)
    with torch.no_grad():
        model.a.copy_(torch.rand(2, K) + 0.2)
        model.bias.copy_(torch.tensor([0.3, -0.2, 0.1]))
    batch = batch_of(blobs((U, V), 12))
    model.train()
    assert model.step == 1
    loss, metrics = model.loss(batch)
    scores = model.scores(batch)
    logits = model.fuse(scores)
    # h_k = Σ_m a_k^(m) s_k^(m) + b_k
    assert torch.allclose(logits, model.a[0] * scores["u"] + model.a[1] * scores["v"] + model.bias)
    stacked = torch.stack([scores["u"], scores["v"]], 1).detach()
    ce = F.cross_entropy(logits, batch["label"])
    expected = ce + 0.7 * ref_margin(stacked, batch["label"]).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert metrics["step"] == 1.0
    assert metrics["ce"] == pytest.approx(ce.item(), rel=1e-6)
    assert metrics["margin_l1"] == pytest.approx(ref_margin(stacked, batch["label"]).mean().item(), rel=1e-6)
    loss.backward()
    assert model.a.grad is not None and model.encoders["u"].proj.weight.grad is not None


def test_crmt_jt_step2_loss_is_minus_the_mean_runner_up_bound_and_trains_only_a():
    torch.manual_seed(0)
    model = build_model("crmt-jt", (U, V), {"latent_dim": 4}, num_classes=K)
    with torch.no_grad():
        model.a.copy_(torch.tensor([[0.5, -1.0, 0.8], [1.2, 0.3, -0.6]]))
        model.bias.copy_(torch.tensor([0.1, -0.1, 0.2]))
        model.tau.copy_(torch.tensor([[1.0, 2.0, 0.5], [0.7, 1.5, 3.0]]))
    batch = batch_of(blobs((U, V), 9))
    model.step = 2
    model.train()
    loss, metrics = model.loss(batch)
    with torch.no_grad():
        logits = model.encode(batch)
    a, tau = model.a.detach(), model.tau
    bounds = []
    for i in range(9):
        y = int(batch["label"][i])
        j = max((k for k in range(K) if k != y), key=lambda k: float(logits[i, k]))
        denom = math.sqrt(sum((abs(a[m, y]) * tau[m, y] + abs(a[m, j]) * tau[m, j]).item() ** 2 for m in range(2)))
        bounds.append(float(logits[i, y] - logits[i, j]) / denom)
    assert loss.item() == pytest.approx(-sum(bounds) / 9, rel=1e-5)
    assert metrics["step"] == 2.0 and metrics["certified_bound"] == pytest.approx(sum(bounds) / 9, rel=1e-5)
    loss.backward()
    assert model.a.grad is not None and model.a.grad.abs().sum() > 0
    others = [n for n, p in model.named_parameters() if n != "a" and p.grad is not None]
    assert others == [], f"step 2 must train `a` alone; gradients reached {others}"


# ---------------------------------------------------------------------------------- orthonormal heads


@torch.no_grad()
def _gram_error(model) -> float:
    return max(
        float((model.heads[n].weight @ model.heads[n].weight.t() - torch.eye(K)).abs().max()) for n in model.names
    )


@pytest.mark.parametrize("name", ["ojt", "crmt-jt"])
def test_orthonormal_rows_at_init_and_after_training(name):
    torch.manual_seed(0)
    data = dataset((U, V), n=48)
    options = {"latent_dim": 5, "step2_epochs": 1} if name == "crmt-jt" else {"latent_dim": 5}
    model = build_model(name, data.modalities, options, num_classes=K)
    assert model.heads["u"].weight.shape == (K, 5)
    assert _gram_error(model) < 1e-5
    before = {n: model.heads[n].weight.detach().clone() for n in model.names}
    a_before = model.a.detach().clone()
    train_pipeline(model, data, OptimConfig(lr=0.05, epochs=2, batch_size=16), OptimConfig(epochs=1), seed=0)
    with torch.no_grad():
        assert _gram_error(model) < 1e-5
        for n in model.names:
            assert not torch.allclose(model.heads[n].weight, before[n], atol=1e-3), "training did not move W"
    assert isinstance(model.a, nn.Parameter) and not torch.equal(model.a.detach(), a_before)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_orthonormal_rows_survive_weight_decay(optimizer):
    """The default (householder) map for non-square weights rounds its parameter's diagonal to a
    sign; weight decay pulling it below 1 zeroed W. The heads use the matrix_exp map."""
    torch.manual_seed(0)
    data = dataset((U, V), n=32)
    model = build_model("ojt", (U, V), {"latent_dim": 5}, num_classes=K)
    cfg = OptimConfig(optimizer=optimizer, lr=0.01, weight_decay=1e-4, epochs=1, batch_size=16)
    fit_representation(model, data.train, cfg, seed=0)
    assert _gram_error(model) < 1e-5


def test_jt_rows_are_plain_and_a_is_fixed_at_one():
    torch.manual_seed(0)
    model = build_model("jt", (U, V), {"latent_dim": 5}, num_classes=K)
    assert _gram_error(model) > 0.1, "jt's heads are plain linear maps, not orthonormal"
    assert "a" not in dict(model.named_parameters()) and torch.equal(model.a, torch.ones(2, K))
    # with a ≡ 1 the logits are exactly a linear head on the concatenated features
    batch = blobs((U, V), 5).inputs
    feats = torch.cat([model.encoders[n](batch[n]) for n in model.names], 1)
    w = torch.cat([model.heads[n].weight for n in model.names], 1)
    assert torch.allclose(model.encode(batch), feats @ w.t() + model.bias, atol=1e-6)


def test_orthonormal_heads_need_latent_dim_at_least_the_classes():
    with pytest.raises(ConfigError, match="latent_dim"):
        build_model("ojt", (U, V), {"latent_dim": 2}, num_classes=K)
    with pytest.raises(ConfigError, match="latent_dim"):
        build_model("crmt-jt", (U, V), {"latent_dim": 2}, num_classes=K)
    build_model("jt", (U, V), {"latent_dim": 2}, num_classes=K)  # plain heads: any width
    build_model("ojt", (U, V), {"latent_dim": K}, num_classes=K)


# ---------------------------------------------------------------------------------- Lipschitz estimates


@pytest.mark.parametrize("name", ["jt", "ojt", "crmt-jt"])
def test_lipschitz_is_exact_for_linear_encoders(name):
    torch.manual_seed(0)
    model = build_model(name, (U, V), {"latent_dim": 4, "encoder": "linear"}, num_classes=K)
    train = blobs((U, V), 20)
    tau = model.estimate_lipschitz(train)
    assert tau.shape == (2, K) and torch.equal(model.tau, tau)
    for m, n in enumerate(model.names):
        wa = model.heads[n].weight @ model.encoders[n].proj.weight  # K×d: ∇_x s_k = row k
        for k in range(K):
            assert tau[m, k].item() == pytest.approx(wa[k].norm().item(), rel=1e-5), (n, k)


def _independent_tau(model, split: Split, n: int) -> torch.Tensor:
    """max over samples of ‖∇_{x_i} s_k^(m)(x_i)‖₂ from each sample's own full Jacobian (K×d)."""
    tau = torch.zeros(len(model.names), model.num_classes)
    for m, name in enumerate(model.names):

        def f(xi, name=name):
            return model.heads[name](model.encoders[name](xi.unsqueeze(0)))[0]

        jac = torch.func.vmap(torch.func.jacrev(f))(split.inputs[name][:n])  # n × K × d
        tau[m] = jac.flatten(2).norm(dim=2).max(0).values
    return tau.detach()


def test_lipschitz_per_class_gradients_do_not_accumulate():
    torch.manual_seed(0)
    model = build_model("crmt-jt", (U, V), {"latent_dim": 4, "lipschitz_batch": 7}, num_classes=K)
    model.eval()
    train = blobs((U, V), 20)
    expected = _independent_tau(model, train, 20)
    model.train()
    assert all(p.grad is None for p in model.parameters())
    tau = model.estimate_lipschitz(train)
    assert model.training, "estimate_lipschitz must restore the training mode"
    assert all(p.grad is None for p in model.parameters()), "estimate_lipschitz must leave no .grad"
    assert all(p.requires_grad for p in model.parameters())
    # every class and modality as its own gradient: accumulated gradients would inflate later classes
    assert torch.allclose(tau, expected, rtol=1e-5, atol=1e-7), (tau, expected)
    assert torch.equal(model.tau, tau)
    # lipschitz_samples: only the first samples count
    few = build_model("crmt-jt", (U, V), {"latent_dim": 4, "lipschitz_samples": 5}, num_classes=K)
    few.load_state_dict(model.state_dict())
    assert torch.allclose(few.estimate_lipschitz(train), _independent_tau(few, train, 5), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------- certified radius


def linear_certified_setup():
    """crmt-jt with affine encoders, random positive a, nonzero bias; labels are its predictions
    (all correct) except the last 4 samples, whose labels are changed to a wrong class."""
    torch.manual_seed(0)
    model = build_model("crmt-jt", WIDE, {"latent_dim": 4, "encoder": "linear"}, num_classes=K)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.a.copy_(torch.rand(2, K, generator=g) + 0.5)
        model.bias.copy_(torch.randn(K, generator=g))
        for n in model.names:
            model.encoders[n].proj.weight.mul_(3)
    freeze(model)
    x = {"u": torch.randn(40, 6, generator=g), "v": torch.randn(40, 5, generator=g)}
    with torch.no_grad():
        y = model.encode(x).argmax(1)
    y[-4:] = (y[-4:] + 1) % K
    model.estimate_lipschitz(Split(x, y))
    return model, x, y


def exact_distance(model, x, y, targets) -> torch.Tensor:
    """The exact L2 distance to the decision boundary of the (affine) model, perturbing `targets`."""
    with torch.no_grad():
        logits = model.encode(x)
        out = torch.full((len(y),), float("inf"))
        for i in range(len(y)):
            yi = int(y[i])
            for j in range(K):
                if j == yi:
                    continue
                grad_sq = 0.0
                for n in targets:
                    m = model.names.index(n)
                    wa = model.heads[n].weight @ model.encoders[n].proj.weight
                    grad_sq += float((model.a[m, yi] * wa[yi] - model.a[m, j] * wa[j]).pow(2).sum())
                out[i] = min(out[i], float(logits[i, yi] - logits[i, j]) / math.sqrt(grad_sq))
    return out


def hand_radius(model, x, y, targets) -> torch.Tensor:
    with torch.no_grad():
        logits = model.encode(x)
    a, tau = model.a, model.tau
    out = []
    for i in range(len(y)):
        yi = int(y[i])
        if int(logits[i].argmax()) != yi:
            out.append(0.0)
            continue
        best = float("inf")
        for j in range(K):
            if j != yi:
                rows = [model.names.index(t) for t in targets]
                d = math.sqrt(sum(float(a[m, yi].abs() * tau[m, yi] + a[m, j].abs() * tau[m, j]) ** 2 for m in rows))
                best = min(best, float(logits[i, yi] - logits[i, j]) / d)
        out.append(best)
    return torch.tensor(out)


@pytest.mark.parametrize("targets", [("u", "v"), ("u",), ("v",)])
def test_certified_radius_holds_against_l2_pgd_on_linear_encoders(targets):
    model, x, y = linear_certified_setup()
    chain = Chain(model, OwnHead()).eval()
    assert chain.certifies
    r = chain.certified_radius(x, y, targets)
    assert torch.allclose(r, hand_radius(model, x, y, targets), rtol=1e-5, atol=1e-7)
    assert torch.equal(r[-4:], torch.zeros(4)), "a misclassified sample has radius 0"
    ok = r > 0
    assert int(ok.sum()) >= 30
    # exact constants: the bound never exceeds the true distance to the boundary
    assert (r[ok] <= exact_distance(model, x, y, targets)[ok] * (1 + 1e-5)).all()
    xs, ys, rs = {n: v[ok] for n, v in x.items()}, y[ok], r[ok]
    ranges = {s.name: s.value_range for s in model.specs}
    pgd = ATTACKS.get("pgd_l2").fn
    eps = 0.99 * rs
    adv = pgd(chain, xs, ys, targets, ranges, rng=torch.Generator().manual_seed(0), eps=eps, alpha=2.5 * eps / 25,
              steps=25, restarts=2, random_start=True)  # fmt: skip
    delta = torch.cat([(adv[n] - xs[n]).flatten(1) for n in model.names], 1).norm(dim=1)
    assert (delta <= eps * (1 + 1e-4)).all()
    for n in model.names:
        if n not in targets:
            assert torch.equal(adv[n], xs[n])
    with torch.no_grad():
        assert torch.equal(chain(adv).argmax(1), ys), "a prediction flipped inside the certified radius"
    # the bound is not vacuous: at twice the radius L2-PGD flips most samples (linear model)
    eps = 2.0 * rs
    adv = pgd(chain, xs, ys, targets, ranges, rng=torch.Generator().manual_seed(0), eps=eps, alpha=2.5 * eps / 15,
              steps=15, restarts=1, random_start=True)  # fmt: skip
    with torch.no_grad():
        assert float((chain(adv).argmax(1) != ys).float().mean()) > 0.5


def test_uni_modal_radius_is_at_least_the_joint_radius():
    model, x, y = linear_certified_setup()
    joint = model.certified_radius(x, y, ("u", "v"))
    for n in model.names:
        single = model.certified_radius(x, y, (n,))
        assert (single >= joint - 1e-7).all()
        assert (single[:-4] > joint[:-4]).all()  # strictly: both terms of the joint sum are positive
    vul = model.vulnerability(x, y)
    assert vul.shape == (40, 2) and (vul > 0).all()


# ---------------------------------------------------------------------------------- steps and rounds


def test_schedule_of_steps():
    stage = schedule("crmt-jt", {"latent_dim": 4, "step2_epochs": 2}, 3)
    assert stage.epochs == 5 and steps(stage) == [1, 1, 1, 2, 2]
    stage = schedule("crmt-jt", {"latent_dim": 4, "rounds": 3, "step2_epochs": 1}, 2)
    assert stage.epochs == 9 and steps(stage) == [1, 1, 2, 1, 1, 2, 1, 1, 2]


def _trainable_state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k not in ("a", "tau")}


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_step2_trains_only_a_and_freezes_batchnorm(optimizer):
    torch.manual_seed(0)
    specs = (SOUND, U)
    data = dataset(specs, n=32)
    model = build_model("crmt-jt", specs, {"latent_dim": 4, "step2_epochs": 2}, num_classes=K)
    bns = bn_modules(model)
    assert len(bns) == 3
    snaps, modes, steps_seen = {}, [], []
    real_loss = model.loss

    def spy(batch):
        modes.append((model.step, model.training, [m.training for m in bns]))
        return real_loss(batch)

    model.loss = spy  # what the training loop calls
    cfg = OptimConfig(optimizer=optimizer, lr=0.01, epochs=1, batch_size=16)

    def on_epoch(stage, epoch, record):
        steps_seen.append(record["step"])
        snaps[epoch] = (_trainable_state(model), model.a.detach().clone(), model.tau.clone())

    history = fit_representation(model, data.train, cfg, seed=0, on_epoch=on_epoch)
    assert len(history) == 3 and steps_seen == [1.0, 2.0, 2.0]
    step1_modes = [m for m in modes if m[0] == 1]
    step2_modes = [m for m in modes if m[0] == 2]
    assert step1_modes and all(training and all(bn) for _, training, bn in step1_modes)
    assert step2_modes and all(training and not any(bn) for _, training, bn in step2_modes)
    state1, a1, _ = snaps[1]
    for epoch in (2, 3):
        state, a, tau = snaps[epoch]
        for key, value in state1.items():
            assert torch.equal(state[key], value), f"{key} changed in step 2 (epoch {epoch})"
        assert (tau > 0).all(), "τ̃ must be estimated before step 2"
    assert not torch.equal(snaps[2][1], a1) and not torch.equal(snaps[3][1], snaps[2][1]), "a must train in step 2"
    assert any("running_mean" in k for k in state1) and any("num_batches_tracked" in k for k in state1)
    # the mode switch itself: model.train() in step 1 vs step 2
    stage = schedule("crmt-jt", {"latent_dim": 4, "step2_epochs": 2}, 1)
    enter_phase(model, stage, 1, data.train)
    model.train()
    assert all(m.training for m in bns) and model.heads.training
    enter_phase(model, stage, 2, data.train)
    model.train()
    assert model.training and not any(m.training for m in bns) and not model.heads.training
    model.eval()
    assert not any(m.training for m in bns)


def test_rounds_alternate_steps_and_reestimate_lipschitz():
    torch.manual_seed(0)
    data = dataset((U, V), n=32)
    model = build_model("crmt-jt", (U, V), {"latent_dim": 4, "rounds": 2, "step2_epochs": 1}, num_classes=K)
    stage = schedule("crmt-jt", {"latent_dim": 4, "rounds": 2, "step2_epochs": 1}, 1)
    assert stage.epochs == 4 and steps(stage) == [1, 2, 1, 2]
    calls = []
    real = model.estimate_lipschitz

    def spy(train):
        calls.append(model.step)
        return real(train)

    model.estimate_lipschitz = spy
    history = fit_representation(model, data.train, OptimConfig(lr=0.01, epochs=1, batch_size=16), seed=0)
    assert [h["step"] for h in history] == [1.0, 2.0, 1.0, 2.0]
    assert "certified_bound" in history[1] and "margin_l1" in history[2]
    # τ̃ before each step 2 (epochs 2 and 4) and once more after training
    assert calls == [2, 2, 2]


def test_step2_begins_with_the_lipschitz_estimates_of_the_training_split():
    model = build_model("crmt-jt", (U, V), {"latent_dim": 4, "step2_epochs": 1}, num_classes=K)
    stage = schedule("crmt-jt", {"latent_dim": 4, "step2_epochs": 1}, 1)
    assert stage.phases[1].begin == "estimate_lipschitz"
    enter_phase(model, stage, 2, blobs((U, V), 16))
    assert model.step == 2 and (model.tau > 0).all()


# ---------------------------------------------------------------------------------- CRMT-AT and CRMT-Mix


def test_crmt_at_requests_joint_l2_pgd_in_step1_only():
    torch.manual_seed(0)
    train = blobs((U, V), 24)
    model = build_model(
        "crmt-at", (U, V), {"latent_dim": 4, "at_eps": 0.3, "at_steps": 4, "step2_epochs": 1}, num_classes=K
    )
    stage = schedule("crmt-at", {"latent_dim": 4, "at_eps": 0.3, "at_steps": 4, "step2_epochs": 1}, 1)
    request = enter_phase(model, stage, 1, train).craft
    assert request is not None and request.attack == "pgd_l2" and request.targets is None
    assert request.params["eps"] == 0.3 and request.params["steps"] == 4
    assert request.params["alpha"] == pytest.approx(2.5 * 0.3 / 4)
    batch = batch_of(train)
    for training in (True, False):
        model.train(training)
        adv = craft_batch(model, batch, request, torch.Generator().manual_seed(0))
        assert model.training is training, "craft_batch must restore the model's mode"
        dist = torch.cat([(adv[n] - batch[n]).flatten(1) for n in model.names], 1).norm(dim=1)
        assert (dist <= 0.3 + 1e-5).all() and dist.max() > 0.2
        assert all(adv[n].min() >= 0 and adv[n].max() <= 1 for n in model.names)
        assert all(p.grad is None for p in model.parameters())
        with torch.no_grad():
            model.eval()
            clean_loss = F.cross_entropy(model.encode(batch), batch["label"])
            adv_loss = F.cross_entropy(model.encode(adv), batch["label"])
        assert adv_loss > clean_loss
    assert enter_phase(model, stage, 2, train).craft is None and model.step == 2


def test_crmt_mix_loss_mixes_ce_and_margin_with_the_same_lambda_and_permutation():
    torch.manual_seed(0)
    options = {"latent_dim": 4, "mix_alpha": 0.4, "rho": 1.5, "margin_floor": 0.0}
    model = build_model("crmt-mix", (U, V), options, num_classes=K)
    batch = batch_of(blobs((U, V), 10))
    model.train()
    torch.manual_seed(123)
    loss, metrics = model.loss(batch)
    torch.manual_seed(123)
    loss_again, _ = model.loss(batch)
    assert loss.item() == loss_again.item()
    # re-draw λ and the permutation exactly as CRMTMixup.step1_inputs does
    torch.manual_seed(123)
    alpha = torch.tensor(0.4)
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(10)
    assert 0 < lam < 1 and not torch.equal(perm, torch.arange(10))
    y_a, y_b = batch["label"], batch["label"][perm]
    mixed = {n: lam * batch[n] + (1 - lam) * batch[n][perm] for n in model.names}
    scores = model.scores(mixed)
    logits = model.fuse(scores)
    stacked = torch.stack([scores[n] for n in model.names], 1).detach()
    part_a = F.cross_entropy(logits, y_a) + 1.5 * ref_margin(stacked, y_a).mean()
    part_b = F.cross_entropy(logits, y_b) + 1.5 * ref_margin(stacked, y_b).mean()
    expected = lam * part_a + (1 - lam) * part_b
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    ce = lam * F.cross_entropy(logits, y_a) + (1 - lam) * F.cross_entropy(logits, y_b)
    assert metrics["ce"] == pytest.approx(ce.item(), rel=1e-5)
