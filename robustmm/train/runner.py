"""The one runner of training plans (robustmm/models/plan.py documents the lifecycle it
follows), and the short forms tests and benchmarks use: train a model by its plan for given
budgets, or one stage of it alone.

The run seed fixes initialisation, shuffling and training noise: the same seed on the same CPU
gives the same numbers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from robustmm.config import OptimConfig
from robustmm.data.base import MultimodalDataset, Split
from robustmm.models.base import Chain, Classifier, OwnHead, RepresentationModel, build_model
from robustmm.models.plan import REFERENCE_STAGE_NAMES, ClassifierStage, ModelStage, Plan, Reference
from robustmm.train.loop import Checkpointing, LoopState, RunState, weights
from robustmm.train.reporting import Callbacks, EpochCallback, Renamed, Reporter, Saving
from robustmm.train.stages import classifier_stage, craft_batch, freeze, model_stage

log = logging.getLogger(__name__)


@dataclass
class Pipeline:
    """A trained, frozen representation model and its downstream classifier."""

    model: RepresentationModel
    classifier: nn.Module
    history: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    seconds: float = 0.0


def run_plan(
    plan: Plan,
    model: RepresentationModel,
    dataset: MultimodalDataset,
    *,
    seed: int,
    reporter: Reporter | None = None,
    checkpointing: Checkpointing | None = None,
) -> Pipeline:
    """Train `model` by `plan` on `dataset.train` (already on the run's device); the lifecycle is
    robustmm/models/plan.py's. A resume state skips the stages before its own and restores what
    they trained (the model's weights, the reference pipeline) from it."""
    start = time.perf_counter()
    reporter = reporter or Reporter()
    if checkpointing is not None and checkpointing.save is not None:
        reporter = Saving(reporter, checkpointing.save)
    resume = checkpointing.resume if checkpointing else None
    run = RunState(
        seed=seed,
        device=dataset.train.labels.device,
        reporter=reporter,
        every=checkpointing.every if checkpointing else 0,
        resume=resume,
        history={"representation": [], "classifier": []},
    )
    if resume is not None:
        run.history.update({k: [dict(h) for h in v] for k, v in resume.finished.items()})
        if resume.frozen is not None:
            model.load_state_dict(resume.frozen)
            run.frozen = resume.frozen
    if plan.reference is not None:
        run.reference = reference_pipeline(plan.reference, model, dataset, seed, reporter, resume)
        run.reference_weights = weights(run.reference)  # frozen: taken once, carried by every checkpoint
    classifier: nn.Module = OwnHead()
    first = resume.stage_index if resume is not None else 0
    for index, stage in enumerate(plan.stages):
        if index < first:
            continue
        if isinstance(stage, ModelStage):
            run.history[stage.name] = model_stage(run, index, stage, model, dataset.train)
        else:
            classifier, run.history[stage.name] = classifier_stage(
                run, index, stage, model, dataset.train, dataset.num_classes
            )
    freeze(model)
    return Pipeline(model, classifier, run.history, time.perf_counter() - start)


def reference_pipeline(
    reference: Reference,
    model: RepresentationModel,
    dataset: MultimodalDataset,
    seed: int,
    reporter: Reporter,
    resume: LoopState | None = None,
) -> Chain:
    """The frozen pipeline a plan trains before its model (RGMC's GMC + classifier).

    It draws from its own seed (run seed + the reference's offset) inside a forked RNG, so the
    model's own random stream is the same whether or not a reference was trained; a resume state
    that carries its weights rebuilds it without training. Its epochs report as stages
    "reference" and "reference-classifier"."""
    ref_seed = seed + reference.seed_offset
    device = dataset.train.labels.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(ref_seed)
        ref_model = reference_model(reference, model, dataset)
        if resume is not None and resume.reference is not None:
            chain = Chain(ref_model, untrained_head(reference.plan, ref_model, dataset.num_classes).to(device))
            chain.load_state_dict(resume.reference)
        else:  # the head is built by the plan's classifier stage, from its own seed
            log.info("training the reference %s for %s", reference.model, type(model).__name__)
            pipe = run_plan(reference.plan, ref_model, dataset, seed=ref_seed, reporter=Renamed(reporter, seed))
            chain = Chain(pipe.model, pipe.classifier)
    freeze(chain)
    return chain.eval()


def reference_model(
    reference: Reference, model: RepresentationModel, dataset: MultimodalDataset
) -> RepresentationModel:
    """The reference pipeline's model, untrained, on the dataset's device."""
    ref = build_model(reference.model, model.specs, reference.options, num_classes=dataset.num_classes)
    return ref.to(dataset.train.labels.device)


def untrained_head(plan: Plan, model: RepresentationModel, num_classes: int) -> nn.Module:
    """An untrained classifier of the shape `plan` trains (OwnHead when it trains none)."""
    stage = next((s for s in plan.stages if isinstance(s, ClassifierStage)), None)
    return OwnHead() if stage is None else Classifier(model.latent_dim, num_classes, stage.hidden)


def plan_of(model: RepresentationModel, train_cfg: OptimConfig, classifier_cfg: OptimConfig) -> Plan:
    return type(model).plan(model.options, train_cfg, classifier_cfg)


def train_pipeline(
    model: RepresentationModel,
    dataset: MultimodalDataset,
    train_cfg: OptimConfig,
    classifier_cfg: OptimConfig,
    *,
    seed: int,
    reporter: Reporter | None = None,
    on_epoch: EpochCallback | None = None,
    checkpointing: Checkpointing | None = None,
) -> Pipeline:
    """Train `model` by its plan for these budgets (`run_plan`); `on_epoch(stage, epoch, metrics)`
    is the short form of a reporter."""
    if reporter is None and on_epoch is not None:
        reporter = Callbacks(on_epoch)
    plan = plan_of(model, train_cfg, classifier_cfg)
    return run_plan(plan, model, dataset, seed=seed, reporter=reporter, checkpointing=checkpointing)


def fit_representation(
    model: RepresentationModel,
    train: Split,
    cfg: OptimConfig,
    *,
    seed: int,
    on_epoch: EpochCallback | None = None,
) -> list[dict[str, float]]:
    """The model stages of the model's plan alone, on a training split (no reference, no
    classifier): the representation's history."""
    plan = plan_of(model, cfg, OptimConfig(epochs=0))
    run = RunState(seed, train.labels.device, Callbacks(on_epoch), 0, None, {"representation": []})
    for index, stage in enumerate(plan.stages):
        if isinstance(stage, ModelStage):
            run.history[stage.name] = model_stage(run, index, stage, model, train)
    return run.history["representation"]


def fit_classifier(
    model: RepresentationModel,
    train: Split,
    num_classes: int,
    cfg: OptimConfig,
    *,
    seed: int,
    on_epoch: EpochCallback | None = None,
) -> tuple[Classifier, list[dict[str, float]]]:
    """The classifier stage of the model's plan alone, on latents of the frozen model."""
    plan = plan_of(model, OptimConfig(epochs=0), cfg)
    stage = next(s for s in plan.stages if isinstance(s, ClassifierStage))
    run = RunState(seed, train.labels.device, Callbacks(on_epoch), 0, None, {})
    return classifier_stage(run, plan.stages.index(stage), stage, model, train, num_classes)


def epoch_metrics(plan: Plan, model: RepresentationModel, dataset: MultimodalDataset) -> set[str]:
    """The metric names ('stage/metric') a run of `plan` reports per epoch, found by one loss call
    on two samples per phase, with an untrained stand-in for a reference pipeline."""
    names: set[str] = set()
    reference = None
    if plan.reference is not None:
        ref_model = reference_model(plan.reference, model, dataset)
        head = untrained_head(plan.reference.plan, ref_model, dataset.num_classes)
        reference = Chain(ref_model, head).to(dataset.train.labels.device)
        inner = epoch_metrics(plan.reference.plan, ref_model, dataset)
        for name in inner:
            stage, metric = name.split("/", 1)
            names.add(f"{REFERENCE_STAGE_NAMES.get(stage, stage)}/{metric}")
    train = dataset.train.subset(slice(0, 2))
    for stage in plan.stages:
        if stage.epochs == 0:
            continue
        metrics = {"loss", "epoch_seconds"}
        if isinstance(stage, ClassifierStage):
            metrics.add("train_accuracy")
        else:
            for phase in stage.phases:
                if phase.epochs == 0:
                    continue
                for key, value in phase.settings.items():
                    setattr(model, key, value)
                batch: dict[str, Any] = {**train.inputs, "label": train.labels}
                if phase.craft is not None:
                    batch.update(craft_batch(model, batch, phase.craft, torch.Generator(), reference))
                metrics |= set(getattr(model, phase.loss)(batch)[1])
        names |= {f"{stage.name}/{m}" for m in metrics}
    return names


def seed_everything(seed: int) -> None:
    """Seeds the global torch RNG (initialisation, training noise) for one run."""
    torch.manual_seed(seed)
