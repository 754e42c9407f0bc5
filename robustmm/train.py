"""The one runner of training plans (robustmm/models/plan.py documents the lifecycle it follows).

Data stay whole tensors on the run's device; a batch is a slice of index tensors, so there is
no per-sample Python work in the hot loop. The run seed fixes initialisation, shuffling and
training noise: the same seed on the same CPU gives the same numbers. A front end (the CLI, a
report, a Ray trial) hears the run through one `Reporter`; a checkpoint (`LoopState`, keyed by
stage index and epoch) rides with the epoch report it was taken at.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robustmm.attacks import ATTACKS
from robustmm.config import OptimConfig
from robustmm.data.base import MultimodalDataset, Split
from robustmm.errors import TrainingError
from robustmm.models.base import Chain, Classifier, OwnHead, RepresentationModel, build_model
from robustmm.models.plan import REFERENCE_STAGE_NAMES, ClassifierStage, Craft, ModelStage, Phase, Plan, Reference

log = logging.getLogger(__name__)

# (stage, epoch, metrics) after each epoch: the short form of `Reporter.on_epoch`.
EpochCallback = Callable[[str, int, dict[str, float]], None]

CLASSIFIER_INPUT_SEED_OFFSET = 104729


class Reporter:
    """What a front end hears from one run, in this order for every seed: `on_stage` when a stage
    begins (its reported name and epochs), `on_epoch` after each epoch (the epoch's mean metrics,
    and the checkpoint state when one is due, else None), `on_eval` while the grid is evaluated,
    `on_seed_done` with the seed's rows. Every method is optional."""

    def on_stage(self, seed: int, stage: str, total: int) -> None: ...
    def on_epoch(
        self, seed: int, stage: str, epoch: int, metrics: dict[str, float], state: LoopState | None
    ) -> None: ...
    def on_eval(self, seed: int, description: str, done: int, total: int) -> None: ...
    def on_seed_done(self, seed: int, rows: list[dict[str, Any]]) -> None: ...


class _Callbacks(Reporter):
    """A Reporter from the short callbacks: `on_epoch(stage, epoch, metrics)` and `save(state)`."""

    def __init__(self, on_epoch: EpochCallback | None, save: Callable[[LoopState], None] | None) -> None:
        self.epoch, self.save = on_epoch, save

    def on_epoch(self, seed: int, stage: str, epoch: int, metrics: dict[str, float], state: LoopState | None) -> None:
        if state is not None and self.save is not None:
            self.save(state)
        if self.epoch is not None:
            self.epoch(stage, epoch, metrics)


class _Renamed(Reporter):
    """A reference pipeline's reports, under the reference's stage names."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner

    def on_stage(self, seed: int, stage: str, total: int) -> None:
        self.inner.on_stage(seed, REFERENCE_STAGE_NAMES.get(stage, stage), total)

    def on_epoch(self, seed: int, stage: str, epoch: int, metrics: dict[str, float], state: LoopState | None) -> None:
        self.inner.on_epoch(seed, REFERENCE_STAGE_NAMES.get(stage, stage), epoch, metrics, None)


def make_optimizer(
    params: Iterator[nn.Parameter] | list[nn.Parameter] | list[dict[str, Any]], cfg: OptimConfig
) -> torch.optim.Optimizer:
    """The configured optimizer over `params`: parameters, or groups {'name', 'params'}."""
    params = list(params)
    if params and isinstance(params[0], dict):
        params = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in params]
        params = [g for g in params if g["params"]]
    else:
        params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> Iterator[Tensor]:
    """Index batches over a fresh permutation; the last partial batch is dropped when it is a
    single sample (contrastive losses need pairs, BatchNorm needs two values)."""
    order = torch.randperm(n, generator=generator).to(device)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if len(idx) > 1:
            yield idx


def _check_finite(loss: Tensor, stage: str, epoch: int, step: int) -> None:
    if not torch.isfinite(loss):
        raise TrainingError(
            f"{stage} loss became {float(loss.detach())} at epoch {epoch}, step {step}; "
            "lower the learning rate (train.lr) or the loss weights"
        )


@dataclass
class LoopState:
    """Where a run stands after `epoch` epochs of stage `stage_index` (named `stage`): enough to
    continue it bit for bit.

    Besides the stage's weights and optimizer it holds every random state the loop draws from
    (the shuffling generator, the global CPU and CUDA generators that training noise uses), the
    histories of the stages before (`finished`), the model's weights when a later stage trains
    something else (`frozen`) and the reference pipeline's weights (`reference`), so a run
    resumed from it gives the same numbers as one that never stopped.
    """

    stage: str
    epoch: int
    module: dict[str, Tensor]
    optimizer: dict[str, Any]
    generator: Tensor
    rng: Tensor
    cuda_rng: list[Tensor]
    history: list[dict[str, float]]
    finished: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    frozen: dict[str, Tensor] | None = None
    stage_index: int = 0
    reference: dict[str, Tensor] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LoopState:
        return cls(**raw)


@dataclass
class Checkpointing:
    """Take a LoopState after every `every` epochs of a stage (and after its last); it reaches
    the reporter with that epoch's report (and `save`, when given, just before). `resume`
    continues from one."""

    every: int
    save: Callable[[LoopState], None] | None = None
    resume: LoopState | None = None


def _weights(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@dataclass
class _Run:
    """What the stages of one run of a plan share."""

    seed: int
    device: torch.device
    reporter: Reporter
    every: int
    resume: LoopState | None
    history: dict[str, list[dict[str, float]]]
    reference: Chain | None = None
    frozen: dict[str, Tensor] | None = None

    def resume_for(self, index: int) -> LoopState | None:
        return self.resume if self.resume is not None and self.resume.stage_index == index else None


def run_epochs(
    run: _Run,
    index: int,
    name: str,
    module: nn.Module,
    loss_fn: Callable[[Tensor], tuple[Tensor, dict[str, float]]],
    n: int,
    cfg: OptimConfig,
    epochs: int,
    *,
    seed: int,
    optimizer: torch.optim.Optimizer | None = None,
    on_epoch_start: Callable[[int], None] | None = None,
) -> list[dict[str, float]]:
    """The one training loop every stage uses: shuffle, step, average metrics, report per epoch.

    It continues from the run's resume state when that is of stage `index`, and takes its
    state every `run.every` epochs (and after the last). `on_epoch_start` hears each epoch's
    number before it runs (resumed epochs included)."""
    opt = optimizer or make_optimizer(list(module.parameters()), cfg)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    first = 1
    resume = run.resume_for(index)
    if resume is not None:
        module.load_state_dict(resume.module)
        opt.load_state_dict(resume.optimizer)
        gen.set_state(resume.generator)
        torch.set_rng_state(resume.rng)
        if resume.cuda_rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(resume.cuda_rng)
        history, first = [dict(h) for h in resume.history], resume.epoch + 1
    if first <= epochs:
        run.reporter.on_stage(run.seed, name, epochs)
    for epoch in range(first, epochs + 1):
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        module.train()
        start = time.perf_counter()
        sums: dict[str, float] = {}
        steps = 0
        for step, idx in enumerate(shuffled_batches(n, cfg.batch_size, gen, run.device)):
            loss, metrics = loss_fn(idx)
            _check_finite(loss, name, epoch, step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            for k, v in {"loss": float(loss.detach()), **metrics}.items():
                sums[k] = sums.get(k, 0.0) + v
        record = {k: v / max(steps, 1) for k, v in sums.items()}
        record["epoch_seconds"] = time.perf_counter() - start
        history.append(record)
        log.info("%s epoch %d/%d: %s", name, epoch, epochs, _fmt(record))
        state = None
        if run.every > 0 and (epoch % run.every == 0 or epoch == epochs):
            state = LoopState(
                stage=name,
                epoch=epoch,
                module=_weights(module),
                optimizer=opt.state_dict(),
                generator=gen.get_state(),
                rng=torch.get_rng_state(),
                cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                history=[dict(h) for h in history],
                finished={k: [dict(h) for h in v] for k, v in run.history.items() if v},
                frozen=run.frozen,
                stage_index=index,
                reference=_weights(run.reference) if run.reference is not None else None,
            )
        run.reporter.on_epoch(run.seed, name, epoch, record, state)
    module.eval()
    return history


def _fmt(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in metrics.items())


def craft_batch(
    model: RepresentationModel,
    batch: dict[str, Any],
    craft: Craft,
    rng: torch.Generator,
    reference: Chain | None = None,
) -> dict[str, Any]:
    """What `craft` adds to a training batch: its adversarial inputs (under the modality names,
    replacing the clean ones, or as one dict under "adversarial"), made by the very attack
    function the evaluator runs, against the model itself or the plan's frozen reference; the
    model's train/eval mode is restored afterwards."""
    inputs = {n: batch[n] for n in model.names}
    objective = getattr(model, craft.loss) if craft.loss else None
    if craft.against == "reference":
        if reference is None:
            raise TrainingError(f"{type(model).__name__} crafts against a reference pipeline its plan does not train")
        chain: Callable[..., Tensor] = reference
    elif objective is None and not model.own_head:
        raise TrainingError(f"{type(model).__name__} crafts against its own logits but has no head of its own")
    else:
        chain = model.encode
    ranges = {s.name: s.value_range for s in model.specs}
    was_training = model.training
    if craft.eval_mode:
        model.eval()
    try:
        with torch.enable_grad():
            adv = ATTACKS.get(craft.attack).fn(
                chain,
                inputs,
                batch["label"],
                craft.targets or model.names,
                ranges,
                rng=rng,
                loss=objective,
                **craft.params,
            )
    finally:
        if craft.eval_mode:
            model.train(was_training)
    adv = {n: adv[n].detach() for n in model.names}
    return {"adversarial": adv} if craft.into == "adversarial" else adv


def enter_phase(
    model: RepresentationModel,
    stage: ModelStage,
    epoch: int,
    train: Split,
    optimizer: torch.optim.Optimizer | None = None,
) -> Phase:
    """Put the model (and the stage's optimizer) in the state of `epoch`'s phase: its settings
    and rates every epoch; at the phase's first epoch also its optimizer-state resets and its
    `begin` method. Returns the phase."""
    _, phase = stage.phase_at(epoch)
    for key, value in phase.settings.items():
        setattr(model, key, value)
    starts = stage.phase_starts(epoch)
    if optimizer is not None:
        for group in optimizer.param_groups:
            rate = phase.rates.get(group.get("name", "all"))
            group["lr"] = stage.cfg.lr * (rate.lr_scale if rate else 1.0)
            decay = rate.weight_decay if rate is not None else None
            group["weight_decay"] = stage.cfg.weight_decay if decay is None else decay
            if starts and group.get("name") in phase.reset:
                for p in group["params"]:
                    optimizer.state.pop(p, None)
    if starts and phase.begin is not None:
        getattr(model, phase.begin)(train)
    return phase


def _model_stage(run: _Run, index: int, stage: ModelStage, model: RepresentationModel, train: Split) -> list[dict]:
    """A model stage: its phases with one optimizer over its parameter groups."""
    if stage.epochs == 0:  # nothing to train (the raw-input baseline): no optimizer over no parameters
        model.eval()
        if stage.after is not None:
            getattr(model, stage.after)(train)
        return []
    groups = getattr(model, stage.groups)() if stage.groups else {"all": list(model.parameters())}
    opt = make_optimizer([{"name": k, "params": list(v)} for k, v in groups.items()], stage.cfg)
    where: dict[str, Any] = {"epoch": 0, "step": 0, "phase": stage.phases[0]}

    def start(epoch: int) -> None:
        where.update(epoch=epoch, step=0, phase=enter_phase(model, stage, epoch, train, opt))

    def loss_fn(idx: Tensor) -> tuple[Tensor, dict[str, float]]:
        batch: dict[str, Any] = {name: x[idx] for name, x in train.inputs.items()}
        batch["label"] = train.labels[idx]
        craft = where["phase"].craft
        if craft is not None:
            # one generator per (seed, epoch, step): a resumed run draws the same random starts
            key = f"{run.seed}|{craft.attack}|{where['epoch']}|{where['step']}"
            rng = torch.Generator(device=run.device).manual_seed(zlib.crc32(key.encode()))
            batch.update(craft_batch(model, batch, craft, rng, run.reference))
        where["step"] += 1
        return getattr(model, where["phase"].loss)(batch)

    history = run_epochs(
        run,
        index,
        stage.name,
        model,
        loss_fn,
        len(train),
        stage.cfg,
        stage.epochs,
        seed=run.seed,
        optimizer=opt,
        on_epoch_start=start,
    )
    if stage.after is not None:
        getattr(model, stage.after)(train)
    return history


@torch.no_grad()
def encode_all(
    model: RepresentationModel,
    split: Split,
    batch_size: int = 1024,
    view: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
) -> Tensor:
    """Frozen latents of a whole split (all modalities present), in eval mode; `view` may replace
    each batch's inputs first (the classifier's training inputs of a model)."""
    model.eval()
    parts = []
    for start in range(0, len(split), batch_size):
        inputs = {k: v[start : start + batch_size] for k, v in split.inputs.items()}
        parts.append(model.encode(view(inputs) if view is not None else inputs))
    return torch.cat(parts)


def _freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


def _classifier_stage(
    run: _Run, index: int, stage: ClassifierStage, model: RepresentationModel, train: Split, num_classes: int
) -> tuple[Classifier, list[dict]]:
    """The classifier on latents of the frozen model, computed once, from the clean training
    inputs or the model's `stage.view` of them (any noise there from its own generator)."""
    _freeze(model)
    run.frozen = _weights(model)
    gen = torch.Generator(device=train.labels.device).manual_seed(run.seed + CLASSIFIER_INPUT_SEED_OFFSET)
    view = getattr(model, stage.view) if stage.view else None
    z = encode_all(model, train, view=(lambda inputs: view(inputs, gen)) if view is not None else None)
    labels = train.labels
    torch.manual_seed(run.seed)
    clf = Classifier(z.shape[1], num_classes, stage.hidden).to(z.device)
    ce = nn.CrossEntropyLoss()

    def loss_fn(idx: Tensor) -> tuple[Tensor, dict[str, float]]:
        logits = clf(z[idx])
        loss = ce(logits, labels[idx])
        acc = (logits.argmax(1) == labels[idx]).float().mean()
        return loss, {"train_accuracy": float(acc)}

    history = run_epochs(run, index, stage.name, clf, loss_fn, len(labels), stage.cfg, stage.epochs, seed=run.seed + 1)
    _freeze(clf)
    return clf, history


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
        reporter = _Saving(reporter, checkpointing.save)
    resume = checkpointing.resume if checkpointing else None
    run = _Run(
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
    classifier: nn.Module = OwnHead()
    first = resume.stage_index if resume is not None else 0
    for index, stage in enumerate(plan.stages):
        if index < first:
            continue
        if isinstance(stage, ModelStage):
            run.history[stage.name] = _model_stage(run, index, stage, model, dataset.train)
        else:
            classifier, run.history[stage.name] = _classifier_stage(
                run, index, stage, model, dataset.train, dataset.num_classes
            )
    _freeze(model)
    return Pipeline(model, classifier, run.history, time.perf_counter() - start)


class _Saving(Reporter):
    """Hands each checkpoint state to `save` before the reporter hears the epoch."""

    def __init__(self, inner: Reporter, save: Callable[[LoopState], None]) -> None:
        self.inner, self.save = inner, save

    def on_stage(self, seed: int, stage: str, total: int) -> None:
        self.inner.on_stage(seed, stage, total)

    def on_epoch(self, seed: int, stage: str, epoch: int, metrics: dict[str, float], state: LoopState | None) -> None:
        if state is not None:
            self.save(state)
        self.inner.on_epoch(seed, stage, epoch, metrics, state)


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
        ref_model = build_model(reference.model, model.specs, reference.options, num_classes=dataset.num_classes)
        ref_model = ref_model.to(device)
        if resume is not None and resume.reference is not None:
            chain = Chain(ref_model, _head(reference.plan, ref_model, dataset.num_classes).to(device))
            chain.load_state_dict(resume.reference)
        else:
            log.info("training the reference %s for %s", reference.model, type(model).__name__)
            pipe = run_plan(reference.plan, ref_model, dataset, seed=ref_seed, reporter=_Renamed(reporter))
            chain = Chain(pipe.model, pipe.classifier)
    _freeze(chain)
    return chain.eval()


def _head(plan: Plan, model: RepresentationModel, num_classes: int) -> nn.Module:
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
        reporter = _Callbacks(on_epoch, None)
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
    run = _Run(seed, train.labels.device, _Callbacks(on_epoch, None), 0, None, {"representation": []})
    for index, stage in enumerate(plan.stages):
        if isinstance(stage, ModelStage):
            run.history[stage.name] = _model_stage(run, index, stage, model, train)
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
    run = _Run(seed, train.labels.device, _Callbacks(on_epoch, None), 0, None, {})
    return _classifier_stage(run, plan.stages.index(stage), stage, model, train, num_classes)


def epoch_metrics(plan: Plan, model: RepresentationModel, dataset: MultimodalDataset) -> set[str]:
    """The metric names ('stage/metric') a run of `plan` reports per epoch, found by one loss call
    on two samples per phase, with an untrained stand-in for a reference pipeline."""
    names: set[str] = set()
    reference = None
    if plan.reference is not None:
        device = dataset.train.labels.device
        ref_model = build_model(
            plan.reference.model, model.specs, plan.reference.options, num_classes=dataset.num_classes
        )
        ref_model = ref_model.to(device)
        reference = Chain(ref_model, _head(plan.reference.plan, ref_model, dataset.num_classes).to(device))
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
