"""Checkpointed training resumes bit for bit: weights, optimizer, shuffling and noise RNGs."""

from __future__ import annotations

import io

import pytest
import torch

from robustmm.config import OptimConfig
from robustmm.models import build_model
from robustmm.train import Checkpointing, LoopState, seed_everything, train_pipeline

SMALL = {"latent_dim": 16, "common_dim": 16, "head_hidden": 32}
REP, CLF = OptimConfig(epochs=3, batch_size=32), OptimConfig(epochs=3, batch_size=32)


def _round_trip(state: LoopState) -> LoopState:
    """Through torch.save / torch.load(weights_only=True), as a checkpoint file would go."""
    buf = io.BytesIO()
    torch.save(state.to_dict(), buf)
    buf.seek(0)
    return LoopState.from_dict(torch.load(buf, weights_only=True))


RGMC = {**SMALL, "odd_hidden": 16, "reference_epochs": 1, "reference_classifier_epochs": 1, "two_phase": True}


def _train(toy, resume=None, saved=None, seed=5, name="gmcwd"):
    seed_everything(seed)
    model = build_model(name, toy.modalities, RGMC if name == "rgmc" else SMALL)
    ckpt = Checkpointing(every=1, save=lambda s: saved.append(_round_trip(s)) if saved is not None else None)
    ckpt.resume = resume
    return train_pipeline(model, toy, REP, CLF, seed=seed, checkpointing=ckpt)


def test_rgmc_resumes_with_the_same_reference_and_phase(toy):
    """RGMC's reference pipeline is not in the checkpoint: it is trained again, from its own seed,
    and the two-phase schedule follows the epoch number, so the resumed run ends the same."""
    saved: list[LoopState] = []
    whole = _train(toy, saved=saved, name="rgmc")
    state = next(s for s in saved if (s.stage, s.epoch) == ("representation", 2))
    torch.manual_seed(1234)
    resumed = _train(toy, resume=state, name="rgmc")
    for a, b in zip(_params(whole), _params(resumed), strict=True):
        assert torch.equal(a, b)


def test_rgmc_resumed_in_the_classifier_stage_trains_no_reference(toy):
    saved: list[LoopState] = []
    whole = _train(toy, saved=saved, name="rgmc")
    state = next(s for s in saved if (s.stage, s.epoch) == ("classifier", 1))
    stages: list[str] = []
    seed_everything(5)
    model = build_model("rgmc", toy.modalities, RGMC)
    ckpt = Checkpointing(every=1, save=lambda s: None, resume=state)
    resumed = train_pipeline(
        model, toy, REP, CLF, seed=5, checkpointing=ckpt, on_epoch=lambda s, e, m: stages.append(s)
    )
    assert stages == ["classifier", "classifier"], "only the classifier's remaining epochs run"
    for a, b in zip(_params(whole), _params(resumed), strict=True):
        assert torch.equal(a, b)


def _params(pipe):
    return [p.detach().clone() for p in (*pipe.model.parameters(), *pipe.classifier.parameters())]


@pytest.mark.slow  # trains gmcwd end to end four times
@pytest.mark.parametrize("at", [("representation", 1), ("representation", 2), ("classifier", 1)])
def test_resumed_training_equals_uninterrupted(toy, at):
    saved: list[LoopState] = []
    whole = _train(toy, saved=saved)
    assert [(s.stage, s.epoch) for s in saved] == [("representation", e) for e in (1, 2, 3)] + [
        ("classifier", e) for e in (1, 2, 3)
    ]
    state = next(s for s in saved if (s.stage, s.epoch) == at)
    torch.manual_seed(1234)  # the resumed process starts from other random states
    resumed = _train(toy, resume=state)
    for a, b in zip(_params(whole), _params(resumed), strict=True):
        assert torch.equal(a, b)
    for stage in ("representation", "classifier"):
        strip = lambda hs: [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in hs]  # noqa: E731
        assert strip(whole.history[stage]) == strip(resumed.history[stage])


def test_classifier_state_carries_the_frozen_representation(toy):
    saved: list[LoopState] = []
    _train(toy, saved=saved)
    clf_state = next(s for s in saved if s.stage == "classifier")
    rep_final = next(s for s in saved if (s.stage, s.epoch) == ("representation", 3))
    assert clf_state.frozen is not None and clf_state.finished["representation"]
    for k, v in rep_final.module.items():
        assert torch.equal(clf_state.frozen[k], v)


CRMT = {"latent_dim": 16, "step2_epochs": 2, "rounds": 2, "lipschitz_samples": 64}


@pytest.mark.slow  # two CRMT schedules end to end, six times each (tests/test_plan.py resumes every model fast)
@pytest.mark.parametrize("name", ["crmt-at", "crmt-mix"])
@pytest.mark.parametrize("at", [2, 3, 5])  # end of round 1's step 1, inside its step 2, inside round 2
def test_crmt_resumes_mid_schedule_bit_for_bit(toy, name, at):
    """CRMT's steps follow the epoch number, its τ̃ ride in the weights, a's learning rate and
    momentum in the optimizer state, AT's random starts come from per-(epoch, step) seeds and
    mixup's draws from the saved global RNG: a resumed run ends exactly like an uninterrupted one."""

    def train(resume=None, saved=None):
        seed_everything(3)
        model = build_model(name, toy.modalities, CRMT, num_classes=10)
        ckpt = Checkpointing(every=1, save=lambda s: saved.append(_round_trip(s)) if saved is not None else None)
        ckpt.resume = resume
        return train_pipeline(model, toy, OptimConfig(epochs=1, batch_size=64), CLF, seed=3, checkpointing=ckpt)

    saved: list[LoopState] = []
    whole = train(saved=saved)
    assert [s.epoch for s in saved] == [1, 2, 3, 4, 5, 6] and {s.stage for s in saved} == {"representation"}
    torch.manual_seed(1234)
    resumed = train(resume=next(s for s in saved if s.epoch == at))
    for a, b in zip(_params(whole), _params(resumed), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(whole.model.tau, resumed.model.tau)
    strip = lambda hs: [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in hs]  # noqa: E731
    assert strip(whole.history["representation"]) == strip(resumed.history["representation"])
