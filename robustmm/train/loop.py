"""The one training loop every stage uses, its optimizer and batches, and its checkpoints.

Data stay whole tensors on the run's device; a batch is a slice of index tensors, so there is
no per-sample Python work in the hot loop. A checkpoint (`LoopState`, keyed by stage index and
epoch) rides with the epoch report it was taken at.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from robustmm.config import OptimConfig
from robustmm.errors import TrainingError
from robustmm.models.base import Chain
from robustmm.train.reporting import Reporter

log = logging.getLogger(__name__)


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


def weights(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@dataclass
class RunState:
    """What the stages of one run of a plan share."""

    seed: int
    device: torch.device
    reporter: Reporter
    every: int
    resume: LoopState | None
    history: dict[str, list[dict[str, float]]]
    reference: Chain | None = None
    reference_weights: dict[str, Tensor] | None = None
    frozen: dict[str, Tensor] | None = None

    def resume_for(self, index: int) -> LoopState | None:
        return self.resume if self.resume is not None and self.resume.stage_index == index else None


def run_epochs(
    run: RunState,
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
                module=weights(module),
                optimizer=opt.state_dict(),
                generator=gen.get_state(),
                rng=torch.get_rng_state(),
                cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                history=[dict(h) for h in history],
                finished={k: [dict(h) for h in v] for k, v in run.history.items() if v},
                frozen=run.frozen,
                stage_index=index,
                reference=run.reference_weights,
            )
        run.reporter.on_epoch(run.seed, name, epoch, record, state)
    module.eval()
    return history


def _fmt(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
