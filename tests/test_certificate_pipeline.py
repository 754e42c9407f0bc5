"""The CRMT family in the shared pipeline: own head instead of a classifier stage, the `crmt` grid,
certified cells and certificate statistics in the rows, tables and objectives, and the refusals
for models without a certificate. The formulas themselves are tested in test_models_crmt.py."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from robustmm.attacks import evaluate_grid, make_cell, parse_grid
from robustmm.config import OptimConfig, from_dict
from robustmm.data.base import MultimodalDataset
from robustmm.errors import ConfigError
from robustmm.evaluate import evaluate_pipeline, model_cells
from robustmm.experiment import prepare
from robustmm.models import build_model
from robustmm.models.base import Chain, Classifier, OwnHead, plan_for
from robustmm.objectives import Objective, certificate_metrics, compute_objectives, make_objective
from robustmm.results import read_parquet, summary_markdown, summary_tables, to_frame, write_parquet
from robustmm.train import seed_everything, train_pipeline

NAMES = ("image", "trajectory")


@pytest.fixture
def trained(toy):
    train, test = toy.train.subset(slice(0, 160)), toy.test.subset(slice(0, 48))
    ds = MultimodalDataset("toy", toy.modalities, 10, train, test, validation=toy.validation)
    seed_everything(0)
    model = build_model("crmt-jt", ds.modalities, {"latent_dim": 16, "step2_epochs": 1}, num_classes=10)
    pipe = train_pipeline(model, ds, OptimConfig(epochs=2, batch_size=32), OptimConfig(epochs=7), seed=0)
    return ds, pipe


def test_own_head_model_trains_one_stage_and_is_its_own_classifier(trained):
    ds, pipe = trained
    assert isinstance(pipe.classifier, OwnHead)
    assert len(pipe.history["representation"]) == 3 and pipe.history["classifier"] == []  # 2 step-1 + 1 step-2
    assert [h["step"] for h in pipe.history["representation"]] == [1.0, 1.0, 2.0]
    x = {k: v[:4] for k, v in ds.test.inputs.items()}
    assert torch.equal(Chain(pipe.model, pipe.classifier)(x), pipe.model.encode(x))
    assert pipe.model.latent_dim == 10 and bool((pipe.model.tau > 0).all())


def test_crmt_grid_has_the_papers_threats_and_certified_radii():
    cells = parse_grid("crmt", NAMES)
    eps = {(c.attack, c.target): c.param("eps") for c in cells if c.attack in ("fgm", "pgd_l2")}
    joint, single = {0.5}, {1.0}
    assert {eps[(a, "image+trajectory")] for a in ("fgm", "pgd_l2")} == joint
    assert {eps[(a, m)] for a in ("fgm", "pgd_l2") for m in NAMES} == single and len(eps) == 6
    assert {c.target for c in cells if c.attack == "missing"} == set(NAMES)
    certified = [c for c in cells if c.attack == "certified"]
    assert {c.target for c in certified} == {"image", "trajectory", "image+trajectory"}
    assert sorted({c.param("eps") for c in certified}) == [0.1, 0.25, 0.5, 1.0]


def test_certified_rows_count_correct_and_certified_samples(trained):
    ds, pipe = trained
    chain = Chain(pipe.model, pipe.classifier).eval()
    cells = [make_cell("clean"), *[make_cell("certified", NAMES, eps=r) for r in (1e-6, 0.05, 1e6)]]
    rows = evaluate_grid(chain, ds.test.inputs, ds.test.labels, cells, ds.value_ranges, seed=0)
    radius = pipe.model.certified_radius(ds.test.inputs, ds.test.labels, NAMES)
    correct = pipe.model.encode(ds.test.inputs).argmax(1) == ds.test.labels
    assert rows[1]["correct"] == int((correct & (radius >= 1e-6)).sum())
    assert rows[2]["correct"] == int((correct & (radius >= 0.05)).sum())
    assert rows[3]["correct"] == 0 and rows[1]["correct"] <= rows[0]["correct"]
    unbatched = evaluate_grid(chain, ds.test.inputs, ds.test.labels, cells, ds.value_ranges, seed=0, batched=False)
    assert [r["correct"] for r in rows] == [r["correct"] for r in unbatched]


def test_evaluate_adds_certificate_statistics_that_objectives_read(trained, tmp_path):
    ds, pipe = trained
    cells = parse_grid("crmt", NAMES)
    rows = evaluate_pipeline(
        pipe.model, pipe.classifier, ds, cells, seed=0, labels={"model": "crmt-jt", "dataset": "toy"}
    )
    stats = {
        (r["perturbation"], r["target"]): r["value"] for r in rows if r["perturbation"] != "certified" and "value" in r
    }
    radius = pipe.model.certified_radius(ds.test.inputs, ds.test.labels, NAMES)
    assert stats[("certified_radius", "image+trajectory")] == pytest.approx(float(radius.mean()), rel=1e-5)
    assert stats[("certified_radius", "image")] >= stats[("certified_radius", "image+trajectory")]
    eta = pipe.model.vulnerability(ds.test.inputs, ds.test.labels).mean(0)
    assert stats[("vulnerability", "image")] == pytest.approx(float(eta[0]), rel=1e-5)
    ratio = stats[("vulnerability_ratio", "image+trajectory")]
    assert ratio == pytest.approx(float(eta.max() / eta.min()), rel=1e-5) and ratio >= 1

    scores = compute_objectives(
        [
            make_objective({"name": "certified_accuracy", "radius": 0.1}),
            make_objective("mean_certified_radius"),
            make_objective("vulnerability_ratio"),
            make_objective({"name": "worst_modality_accuracy", "attack": "pgd_l2"}),
            make_objective("mean_robust_accuracy"),
        ],
        rows,
    )
    joint = next(
        r for r in rows if r["perturbation"] == "certified" and r["target"] == "image+trajectory" and r["eps"] == 0.1
    )
    assert scores["certified_accuracy_0.1"] == joint["accuracy"]  # the joint certificate is the smallest
    assert scores["mean_certified_radius"] == pytest.approx(stats[("certified_radius", "image+trajectory")])
    assert scores["vulnerability_ratio"] == pytest.approx(ratio)
    typed = to_frame(rows)  # the objectives score the worst case over the L2 family (no certified rows in it)
    attacked = typed.loc[typed["perturbation"].isin(["fgm", "pgd_l2"]), "worst_case_accuracy"]
    assert scores["mean_robust_accuracy"] == pytest.approx(attacked.mean())
    metrics = certificate_metrics(rows)
    assert metrics["certificate/vulnerability_ratio"] == pytest.approx(ratio)
    assert "certificate/certified_radius_image-trajectory" in metrics

    df = to_frame(rows)
    write_parquet(df, tmp_path / "r.parquet")
    back = read_parquet(tmp_path / "r.parquet")
    assert back["value"].notna().sum() == len(stats)
    keys = [t.key for t in summary_tables(back)]
    assert keys == ["clean_missing", "fgm", "pgd_l2", "l2_worst", "certified", "certificate"]
    text = summary_markdown(back)
    assert "Certified accuracy" in text and "nan" not in text.lower()


def test_rows_without_a_value_column_still_read(tmp_path):
    row = dict(model="gmc", dataset="toy", seed=0, perturbation="clean", target="none", eps=math.nan, alpha=math.nan,
               sigma=math.nan, steps=math.nan, restarts=math.nan, accuracy=0.5, correct=1, n=2)  # fmt: skip
    pd.DataFrame([row]).to_parquet(tmp_path / "old.parquet")
    assert math.isnan(read_parquet(tmp_path / "old.parquet")["value"].iloc[0])


def test_models_without_a_certificate_are_refused_or_skip_the_certified_cells(toy):
    cells = parse_grid("crmt", NAMES)
    with pytest.raises(ConfigError, match="gives no certified radius.*crmt-jt"):
        model_cells("gmc", cells)
    kept = model_cells("gmc", cells, strict=False)
    assert kept and not any(c.attack == "certified" for c in kept)
    assert model_cells("jt", cells) == cells
    gmc = build_model("gmc", toy.modalities, {"latent_dim": 8, "common_dim": 8, "head_hidden": 8}).eval()
    chain = Chain(gmc, Classifier(8, 10)).eval()
    with pytest.raises(ConfigError, match="certified"):
        evaluate_grid(
            chain,
            toy.test.inputs,
            toy.test.labels,
            cells[:1] + [make_cell("certified", NAMES)],
            toy.value_ranges,
            seed=0,
        )


def test_prepare_refuses_a_certified_grid_for_gmc_before_training():
    cfg = from_dict({"model": {"name": "gmc"}, "dataset": {"name": "synth-mhd", "n_train": 50, "n_test": 20},
                     "eval": {"grid": "crmt"}})  # fmt: skip
    with pytest.raises(ConfigError, match="no certified radius"):
        prepare(cfg)


def test_certificate_objectives_check_the_grid():
    l2 = parse_grid("l2", NAMES)
    with pytest.raises(ConfigError, match="certified"):
        make_objective({"name": "certified_accuracy", "radius": 0.25}).check(l2)
    with pytest.raises(ConfigError, match="radius 0.3"):
        make_objective({"name": "certified_accuracy", "radius": 0.3}).check(parse_grid("crmt", NAMES))
    with pytest.raises(ConfigError, match="radius=-1"):
        Objective("certified_accuracy", (("radius", -1),))
    make_objective({"name": "certified_accuracy", "radius": 0.25}).check(parse_grid("crmt", NAMES))
    assert make_objective("vulnerability_ratio").mode == "min"


def test_crmt_needs_wide_enough_features_for_orthonormal_rows(toy):
    with pytest.raises(ConfigError, match="latent_dim=8 < 10 classes"):
        build_model("crmt-jt", toy.modalities, {"latent_dim": 8}, num_classes=10)
    with pytest.raises(ConfigError, match="has no option 'at_eps'"):
        build_model("crmt-jt", toy.modalities, {"at_eps": 0.5}, num_classes=10)


def test_unknown_dataset_independent_num_classes(toy):
    three = MultimodalDataset("t3", toy.modalities, 3, toy.train, toy.test, validation=toy.validation)
    model = build_model("ojt", three.modalities, {"latent_dim": 4}, num_classes=three.num_classes)
    assert model.encode({k: v[:2] for k, v in toy.test.inputs.items()}).shape == (2, 3)


def test_the_shipped_crmt_config_builds(toy):
    from pathlib import Path

    from robustmm.config import load_yaml

    cfg = from_dict(load_yaml(Path(__file__).parents[1] / "configs" / "crmt.yaml"))
    assert cfg.model == "crmt-jt" and cfg.train.optimizer == "sgd" and cfg.eval.grid == "crmt"
    build_model(cfg.model, toy.modalities, cfg.model_options, num_classes=10)
    assert plan_for(cfg.model, cfg.model_options, cfg.train, cfg.classifier).total_epochs == 133
