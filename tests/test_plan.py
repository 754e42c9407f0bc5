"""Training plans: for every registered model and every schedule corner of its options, a run
reports exactly the epochs its plan counts, stage by stage, and the plan is what a sweep budgets."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest
import torch

from robustmm.config import OptimConfig
from robustmm.data.base import ModalitySpec, MultimodalDataset, Split
from robustmm.models import MODELS, build_model
from robustmm.models.base import plan_for
from robustmm.models.plan import ClassifierStage, ModelStage
from robustmm.train import Checkpointing, LoopState, Reporter, seed_everything, train_pipeline

TINY = {
    "latent_dim": 12,
    "common_dim": 8,
    "head_hidden": 16,
    "hidden": (16,),
    "odd_hidden": 8,
    "lipschitz_samples": 16,
}
SCHEDULE_CORNERS: dict[str, tuple[Any, ...]] = {
    "perturb_against": ("frozen", "current"),
    "two_phase": (False, True),
    "reference_epochs": (None, 2),
    "reference_classifier_epochs": (None, 1),
    "rounds": (1, 2),
    "step2_epochs": (0, 1),
    "classifier_input": ("clean", "noisy"),
}
"""Every option that changes a model's schedule, with the values at its corners."""

TRAIN, CLASSIFIER = OptimConfig(epochs=2, batch_size=32), OptimConfig(epochs=1, batch_size=32)


def corners(name: str) -> list[dict[str, Any]]:
    fields = {f.name for f in dataclasses.fields(MODELS.get(name).cls.Options)}
    base = {k: v for k, v in TINY.items() if k in fields}
    keys = [k for k in SCHEDULE_CORNERS if k in fields]
    return [
        {**base, **dict(zip(keys, combo, strict=True))}
        for combo in itertools.product(*(SCHEDULE_CORNERS[k] for k in keys))
    ]


CASES = [(name, options) for name in MODELS.names() for options in corners(name)]


class Recorder(Reporter):
    def __init__(self) -> None:
        self.stages: list[tuple[str, int]] = []
        self.epochs: list[tuple[str, int]] = []

    def on_stage(self, seed: int, stage: str, total: int) -> None:
        assert seed == 0, "every report carries the run's seed, the reference's stages too"
        self.stages.append((stage, total))

    def on_epoch(self, seed: int, stage: str, epoch: int, metrics: dict[str, float], state: Any) -> None:
        assert seed == 0, "every report carries the run's seed, the reference's stages too"
        self.epochs.append((stage, epoch))


@pytest.fixture(scope="module")
def small() -> MultimodalDataset:
    """Two small vector modalities, three classes: every model trains on them in well under a second."""
    g = torch.Generator().manual_seed(0)
    specs = (ModalitySpec("u", "vector", (6,)), ModalitySpec("v", "vector", (5,)))

    def split(n: int) -> Split:
        y = torch.arange(n) % 3
        return Split({s.name: torch.rand(n, *s.shape, generator=g) for s in specs}, y)

    return MultimodalDataset("tiny", specs, 3, split(64), split(16), validation=split(16))


@pytest.mark.parametrize("name, options", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_epoch_reports_equal_the_plans_total(name, options, small):
    plan = plan_for(name, options, TRAIN, CLASSIFIER)
    seed_everything(0)
    model = build_model(name, small.modalities, options, num_classes=small.num_classes)
    recorder = Recorder()
    train_pipeline(model, small, TRAIN, CLASSIFIER, seed=0, reporter=recorder)
    assert len(recorder.epochs) == plan.total_epochs
    assert recorder.stages == plan.totals(), "each stage is announced once, with the plan's epochs"
    for stage, total in plan.totals():
        assert [e for s, e in recorder.epochs if s == stage] == list(range(1, total + 1))


def test_rgmc_frozen_counts_its_reference():
    """The schedule bug this module ended: reference 2 + 3, train 2, classifier 4 is 11 reports."""
    options = {"perturb_against": "frozen", "reference_epochs": 2, "reference_classifier_epochs": 3}
    plan = plan_for("rgmc", options, OptimConfig(epochs=2), OptimConfig(epochs=4))
    assert plan.totals() == [("reference", 2), ("reference-classifier", 3), ("representation", 2), ("classifier", 4)]
    assert plan.total_epochs == 11


@pytest.mark.parametrize("name", MODELS.names())
def test_own_head_models_plan_no_classifier(name):
    cls = MODELS.get(name).cls
    plan = plan_for(name, {}, OptimConfig(epochs=1), OptimConfig(epochs=1))
    assert plan.own_head == cls.own_head
    assert all(isinstance(s, (ModelStage, ClassifierStage)) for s in plan.stages)


@pytest.mark.parametrize(
    "options, epochs, phases",
    [
        ({"rounds": 2, "step2_epochs": 1}, 2, [("step1", 2), ("step2", 1), ("step1", 2), ("step2", 1)]),
        ({"rounds": 2, "step2_epochs": 0}, 2, [("step1", 4)]),  # no step 2: nothing switches between rounds
        ({"rounds": 3, "step2_epochs": 2}, 0, [("step2", 6)]),
    ],
)
def test_crmt_rounds_switch_only_where_the_step_changes(options, epochs, phases):
    stage = plan_for("crmt-jt", {"latent_dim": 12, **options}, OptimConfig(epochs=epochs), OptimConfig()).stages[0]
    assert [(p.name, p.epochs) for p in stage.phases] == phases


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_resumes_from_its_checkpoints_bit_for_bit(name, small):
    """From a state taken after each epoch but the last, a resumed run ends exactly like the run
    that never stopped: weights, classifier and every stage's history."""
    import io

    options = corners(name)[0]

    def train(resume=None, saved=None):
        seed_everything(0)
        model = build_model(name, small.modalities, options, num_classes=small.num_classes)

        def keep(state):
            if saved is not None:
                buf = io.BytesIO()
                torch.save(state.to_dict(), buf)  # through a file's round trip, as a checkpoint goes
                buf.seek(0)
                saved.append(LoopState.from_dict(torch.load(buf, weights_only=True)))

        ckpt = Checkpointing(every=1, save=keep, resume=resume)
        return train_pipeline(model, small, TRAIN, classifier, seed=0, checkpointing=ckpt)

    classifier = OptimConfig(epochs=2, batch_size=32)  # two, so the raw probe has a state to resume from
    saved: list[LoopState] = []
    whole = train(saved=saved)
    plan = plan_for(name, options, TRAIN, classifier)
    own = sum(e for s, e in plan.totals() if not s.startswith("reference"))
    assert len(saved) == own >= 2, "one state per epoch of the model's own stages"
    strip = lambda hs: [{k: v for k, v in h.items() if k != "epoch_seconds"} for h in hs]  # noqa: E731
    for state in saved[:-1]:
        torch.manual_seed(1234)  # the resumed process starts from other random states
        resumed = train(resume=state)
        for a, b in zip(_params(whole), _params(resumed), strict=True):
            assert torch.equal(a, b), (state.stage, state.epoch)
        for stage in whole.history:
            assert strip(whole.history[stage]) == strip(resumed.history[stage]), (state.stage, state.epoch)


def _params(pipe) -> list[torch.Tensor]:
    return [p.detach().clone() for p in (*pipe.model.parameters(), *pipe.classifier.parameters())]
