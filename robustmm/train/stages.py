"""The two kinds of stage a plan holds, run: a model stage through its phases (settings, rates,
optimizer resets, adversarial examples from the attack registry) and the classifier stage on
latents of the frozen model."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from robustmm.attacks import ATTACKS
from robustmm.data.base import Split
from robustmm.errors import TrainingError
from robustmm.models.base import Chain, Classifier, RepresentationModel
from robustmm.models.plan import ClassifierStage, Craft, ModelStage, Phase
from robustmm.train.loop import RunState, make_optimizer, run_epochs, weights

CLASSIFIER_INPUT_SEED_OFFSET = 104729


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


def model_stage(run: RunState, index: int, stage: ModelStage, model: RepresentationModel, train: Split) -> list[dict]:
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


def freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


def classifier_stage(
    run: RunState, index: int, stage: ClassifierStage, model: RepresentationModel, train: Split, num_classes: int
) -> tuple[Classifier, list[dict]]:
    """The classifier on latents of the frozen model, computed once, from the clean training
    inputs or the model's `stage.view` of them (any noise there from its own generator)."""
    freeze(model)
    run.frozen = weights(model)
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
    freeze(clf)
    return clf, history
