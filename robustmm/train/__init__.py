"""Training: one runner executes any model's plan (robustmm/models/plan.py).

reporting.py   the Reporter every front end implements (CLI, report, Ray trial)
loop.py        the training loop, optimizer, batches, LoopState checkpoints
stages.py      a model stage through its phases; the classifier stage
runner.py      run_plan, the reference pipeline, train_pipeline and one-stage short forms
"""

from robustmm.train.loop import Checkpointing, LoopState, make_optimizer, run_epochs, shuffled_batches
from robustmm.train.reporting import EpochCallback, Reporter
from robustmm.train.runner import (
    Pipeline,
    epoch_metrics,
    fit_classifier,
    fit_representation,
    plan_of,
    reference_pipeline,
    run_plan,
    seed_everything,
    train_pipeline,
)
from robustmm.train.stages import CLASSIFIER_INPUT_SEED_OFFSET, craft_batch, encode_all, enter_phase

__all__ = [
    "CLASSIFIER_INPUT_SEED_OFFSET",
    "Checkpointing",
    "EpochCallback",
    "LoopState",
    "Pipeline",
    "Reporter",
    "craft_batch",
    "encode_all",
    "enter_phase",
    "epoch_metrics",
    "fit_classifier",
    "fit_representation",
    "make_optimizer",
    "plan_of",
    "reference_pipeline",
    "run_epochs",
    "run_plan",
    "seed_everything",
    "shuffled_batches",
    "train_pipeline",
]
