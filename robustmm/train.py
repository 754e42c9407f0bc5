"""The two-stage pipeline: fit the representation without labels, freeze it, fit the classifier.

Data stay whole tensors on the run's device; a batch is a slice of index tensors, so there is
no per-sample Python work in the hot loop. The run seed fixes initialisation, shuffling and
training noise: the same seed on the same CPU gives the same numbers.
"""

from __future__ import annotations

import dataclasses
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
from robustmm.models.base import (
    AdversarialTraining,
    Chain,
    Classifier,
    OwnHead,
    ReferenceRequest,
    RepresentationModel,
    build_model,
)

log = logging.getLogger(__name__)

# (stage, epoch, metrics) after each epoch; stage is "representation" or "classifier".
EpochCallback = Callable[[str, int, dict[str, float]], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        from robustmm.errors import ConfigError

        raise ConfigError(f"device {name!r} asked for but no CUDA device is available; use --set device=cpu")
    return torch.device(name)


def make_optimizer(
    params: Iterator[nn.Parameter] | list[nn.Parameter] | list[dict[str, Any]], cfg: OptimConfig
) -> torch.optim.Optimizer:
    """The configured optimizer over `params`: parameters, or groups {'name', 'params', ...} (each
    group may override lr / weight_decay later; see RepresentationModel.param_groups)."""
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
    """Where one stage's loop stands after `epoch` epochs: enough to continue it bit for bit.

    Besides the weights and the optimizer it holds every random state the loop draws from (the
    shuffling generator, the global CPU and CUDA generators that training noise uses), so a run
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

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> LoopState:
        return cls(**raw)


@dataclass
class Checkpointing:
    """Save a LoopState after every `every` epochs of a stage (and after its last); `resume`
    continues from one. `save` gets the state before the epoch's `on_epoch` call, so a front end
    can hand both to its tracker in one report."""

    every: int
    save: Callable[[LoopState], None]
    resume: LoopState | None = None


def _capture(
    stage: str, epoch: int, module: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator, history: list
) -> LoopState:
    return LoopState(
        stage=stage,
        epoch=epoch,
        module={k: v.detach().clone() for k, v in module.state_dict().items()},
        optimizer=opt.state_dict(),
        generator=gen.get_state(),
        rng=torch.get_rng_state(),
        cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        history=[dict(h) for h in history],
    )


def _restore(state: LoopState, module: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator) -> None:
    module.load_state_dict(state.module)
    opt.load_state_dict(state.optimizer)
    gen.set_state(state.generator)
    torch.set_rng_state(state.rng)
    if state.cuda_rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state.cuda_rng)


def run_epochs(
    stage: str,
    module: nn.Module,
    loss_fn: Callable[[Tensor], tuple[Tensor, dict[str, float]]],
    n: int,
    cfg: OptimConfig,
    *,
    seed: int,
    device: torch.device,
    on_epoch: EpochCallback | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    checkpointing: Checkpointing | None = None,
    finished: dict[str, list[dict[str, float]]] | None = None,
    frozen: nn.Module | None = None,
    on_epoch_start: Callable[[int], None] | None = None,
) -> list[dict[str, float]]:
    """The one training loop both stages use: shuffle, step, average metrics, report per epoch.

    With `checkpointing`, it continues from `checkpointing.resume` when that state is of this
    stage and saves its state every `every` epochs; `finished` (earlier stages' histories) and
    `frozen` (a module trained by an earlier stage) ride along in the saved state. `on_epoch_start`
    hears each epoch's number before it runs (resumed epochs included)."""
    opt = optimizer or make_optimizer(list(module.parameters()), cfg)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    first = 1
    resume = checkpointing.resume if checkpointing else None
    if resume is not None and resume.stage == stage:
        _restore(resume, module, opt, gen)
        history, first = [dict(h) for h in resume.history], resume.epoch + 1
    for epoch in range(first, cfg.epochs + 1):
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        module.train()
        start = time.perf_counter()
        sums: dict[str, float] = {}
        steps = 0
        for step, idx in enumerate(shuffled_batches(n, cfg.batch_size, gen, device)):
            loss, metrics = loss_fn(idx)
            _check_finite(loss, stage, epoch, step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            for k, v in {"loss": float(loss.detach()), **metrics}.items():
                sums[k] = sums.get(k, 0.0) + v
        record = {k: v / max(steps, 1) for k, v in sums.items()}
        record["epoch_seconds"] = time.perf_counter() - start
        history.append(record)
        log.info("%s epoch %d/%d: %s", stage, epoch, cfg.epochs, _fmt(record))
        if checkpointing is not None and checkpointing.every > 0:
            if epoch % checkpointing.every == 0 or epoch == cfg.epochs:
                state = _capture(stage, epoch, module, opt, gen, history)
                state.finished = dict(finished or {})
                if frozen is not None:
                    state.frozen = {k: v.detach().clone() for k, v in frozen.state_dict().items()}
                checkpointing.save(state)
        if on_epoch is not None:
            on_epoch(stage, epoch, record)
    module.eval()
    return history


def _fmt(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in metrics.items())


def fit_representation(
    model: RepresentationModel,
    train: Split,
    cfg: OptimConfig,
    *,
    seed: int,
    on_epoch: EpochCallback | None = None,
    checkpointing: Checkpointing | None = None,
) -> list[dict[str, float]]:
    """Stage 1: `model.representation_epochs(cfg.epochs)` epochs of `model.loss`, with the model's
    parameter groups; a model that asks for adversarial training gets each batch crafted first."""
    device = train.labels.device
    cfg = dataclasses.replace(cfg, epochs=model.representation_epochs(cfg.epochs))
    if cfg.epochs == 0:  # nothing to train (the raw-input baseline): no optimizer over no parameters
        model.eval()
        model.finish_training(train)
        return []
    opt = make_optimizer(model.param_groups(), cfg)
    where = {"epoch": 0, "step": 0}

    def start(epoch: int) -> None:
        where.update(epoch=epoch, step=0)
        model.begin_epoch(epoch, cfg.epochs, train=train, optimizer=opt)

    def loss_fn(idx: Tensor) -> tuple[Tensor, dict[str, float]]:
        batch = {name: x[idx] for name, x in train.inputs.items()}
        batch["label"] = train.labels[idx]
        request = model.adversarial_training()
        if request is not None:
            # one generator per (seed, epoch, step): a resumed run draws the same random starts
            key = f"{seed}|{request.attack}|{where['epoch']}|{where['step']}"
            rng = torch.Generator(device=device).manual_seed(zlib.crc32(key.encode()))
            batch.update(adversarial_batch(model, batch, request, rng))
        where["step"] += 1
        return model.loss(batch)

    history = run_epochs(
        "representation",
        model,
        loss_fn,
        len(train),
        cfg,
        seed=seed,
        device=device,
        on_epoch=on_epoch,
        optimizer=opt,
        checkpointing=checkpointing,
        on_epoch_start=start,
    )
    model.finish_training(train)
    return history


def adversarial_batch(
    model: RepresentationModel, batch: dict[str, Tensor], request: AdversarialTraining, rng: torch.Generator
) -> dict[str, Tensor]:
    """The batch's inputs replaced by `request.attack` examples against the model's own logits,
    crafted with the model in eval mode (BatchNorm statistics untouched), the very attack function
    the evaluator runs (a true L2 projection for pgd_l2)."""
    if not model.own_head:
        raise TrainingError(f"{type(model).__name__} asks for adversarial training but has no head of its own")
    inputs = {n: batch[n] for n in model.names}
    targets = request.targets or model.names
    ranges = {s.name: s.value_range for s in model.specs}
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            adv = ATTACKS.get(request.attack).fn(
                model.encode, inputs, batch["label"], targets, ranges, rng=rng, **request.params
            )
    finally:
        model.train(was_training)
    return {n: adv[n].detach() for n in model.names}


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


CLASSIFIER_INPUT_SEED_OFFSET = 104729


def fit_classifier(
    model: RepresentationModel,
    train: Split,
    num_classes: int,
    cfg: OptimConfig,
    *,
    seed: int,
    on_epoch: EpochCallback | None = None,
    checkpointing: Checkpointing | None = None,
    finished: dict[str, list[dict[str, float]]] | None = None,
) -> tuple[Classifier, list[dict[str, float]]]:
    """Train the classifier (the model's `classifier_hidden` widths) on latents of the frozen
    model: the latents are computed once, from the inputs `model.classifier_training_inputs`
    gives (the clean ones unless the model is configured otherwise; any noise there comes from
    its own generator, seeded from `seed`)."""
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator(device=train.labels.device).manual_seed(seed + CLASSIFIER_INPUT_SEED_OFFSET)
    z = encode_all(model, train, view=lambda inputs: model.classifier_training_inputs(inputs, gen))
    labels = train.labels
    torch.manual_seed(seed)
    clf = Classifier(z.shape[1], num_classes, model.classifier_hidden()).to(z.device)
    ce = nn.CrossEntropyLoss()

    def loss_fn(idx: Tensor) -> tuple[Tensor, dict[str, float]]:
        logits = clf(z[idx])
        loss = ce(logits, labels[idx])
        acc = (logits.argmax(1) == labels[idx]).float().mean()
        return loss, {"train_accuracy": float(acc)}

    history = run_epochs(
        "classifier",
        clf,
        loss_fn,
        len(labels),
        cfg,
        seed=seed + 1,
        device=z.device,
        on_epoch=on_epoch,
        checkpointing=checkpointing,
        finished=finished,
        frozen=model,
    )
    for p in clf.parameters():
        p.requires_grad_(False)
    return clf, history


@dataclass
class Pipeline:
    """A trained, frozen representation model and its downstream classifier."""

    model: RepresentationModel
    classifier: nn.Module
    history: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    seconds: float = 0.0


def train_pipeline(
    model: RepresentationModel,
    dataset: MultimodalDataset,
    train_cfg: OptimConfig,
    classifier_cfg: OptimConfig,
    *,
    seed: int,
    on_epoch: EpochCallback | None = None,
    checkpointing: Checkpointing | None = None,
) -> Pipeline:
    """Stage 1 then stage 2 on `dataset.train` (already on the run's device).

    A `checkpointing.resume` state of the classifier stage skips stage 1: the representation
    weights and history come from the state, and a reference pipeline the model asked for (which
    only stage 1 uses) is not trained."""
    start = time.perf_counter()
    resume = checkpointing.resume if checkpointing else None
    if model.own_head:  # supervised, its own head is the classifier: one stage only
        rep = fit_representation(
            model, dataset.train, train_cfg, seed=seed, on_epoch=on_epoch, checkpointing=checkpointing
        )
        for p in model.parameters():
            p.requires_grad_(False)
        head = OwnHead()
        return Pipeline(model, head, {"representation": rep, "classifier": []}, time.perf_counter() - start)
    request = model.reference_request()
    if request is not None and (resume is None or resume.stage != "classifier"):  # only stage 1 uses it
        model.set_reference(
            train_reference(request, model, dataset, train_cfg, classifier_cfg, seed=seed, on_epoch=on_epoch)
        )
    if resume is not None and resume.stage == "classifier":
        if resume.frozen is None:
            raise TrainingError("a classifier-stage checkpoint lacks the representation weights; start the run afresh")
        model.load_state_dict(resume.frozen)
        rep = resume.finished.get("representation", [])
    else:
        rep = fit_representation(
            model, dataset.train, train_cfg, seed=seed, on_epoch=on_epoch, checkpointing=checkpointing
        )
    clf, cls_hist = fit_classifier(
        model,
        dataset.train,
        dataset.num_classes,
        classifier_cfg,
        seed=seed,
        on_epoch=on_epoch,
        checkpointing=checkpointing,
        finished={"representation": rep},
    )
    return Pipeline(model, clf, {"representation": rep, "classifier": cls_hist}, time.perf_counter() - start)


REFERENCE_SEED_OFFSET = 7919


def reference_epochs(request: ReferenceRequest, train_cfg: OptimConfig, classifier_cfg: OptimConfig) -> tuple[int, int]:
    """(representation, classifier) epochs of a reference pipeline: the request's, else the run's."""
    return (
        train_cfg.epochs if request.epochs is None else request.epochs,
        classifier_cfg.epochs if request.classifier_epochs is None else request.classifier_epochs,
    )


def train_reference(
    request: ReferenceRequest,
    model: RepresentationModel,
    dataset: MultimodalDataset,
    train_cfg: OptimConfig,
    classifier_cfg: OptimConfig,
    *,
    seed: int,
    on_epoch: EpochCallback | None = None,
) -> Chain:
    """Train the frozen pipeline a model asked for (RGMC's GMC + classifier) before the model.

    It draws from its own seed (run seed + a fixed offset) inside a forked RNG, so the model's
    own random stream is the same whether or not a reference was trained, and a resumed run,
    which trains the reference again, gets the very same reference. Its epochs are reported as
    stages "reference" and "reference-classifier"."""
    ref_seed = seed + REFERENCE_SEED_OFFSET
    epochs, classifier_epochs = reference_epochs(request, train_cfg, classifier_cfg)
    ref_train = dataclasses.replace(train_cfg, epochs=epochs)
    ref_classifier = dataclasses.replace(classifier_cfg, epochs=classifier_epochs)
    device = dataset.train.labels.device
    renamed = None
    if on_epoch is not None:
        names = {"representation": "reference", "classifier": "reference-classifier"}
        renamed = lambda stage, epoch, metrics: on_epoch(names[stage], epoch, metrics)  # noqa: E731
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(ref_seed)
        reference = build_model(request.model, model.specs, request.options, num_classes=dataset.num_classes).to(device)
        log.info("training the reference %s for %s", request.model, type(model).__name__)
        pipe = train_pipeline(reference, dataset, ref_train, ref_classifier, seed=ref_seed, on_epoch=renamed)
    return Chain(pipe.model, pipe.classifier).eval()


def seed_everything(seed: int) -> None:
    """Seeds the global torch RNG (initialisation, training noise) for one run."""
    torch.manual_seed(seed)
