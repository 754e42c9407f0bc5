from __future__ import annotations

import ast
import html
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import robustmm.pareto as pareto_package
from robustmm.errors import ConfigError
from robustmm.pareto import front, front_markdown, pareto_ranks, plot_front_html, plot_front_png, rank_trials
from robustmm.pareto.html_page import front_plotly_figure
from robustmm.pareto.png import front_matplotlib_figure

NAN = math.nan
OBJS = [("clean_accuracy", "max", "Clean accuracy"), ("worst_modality_auc_pgd", "max", "Worst-modality PGD AUC")]


def dominates(a: np.ndarray, b: np.ndarray, modes) -> bool:
    """Reference definition, written independently of the module: no worse everywhere, better somewhere."""
    no_worse = all((x >= y) if m == "max" else (x <= y) for x, y, m in zip(a, b, modes, strict=True))
    better = any((x > y) if m == "max" else (x < y) for x, y, m in zip(a, b, modes, strict=True))
    return no_worse and better


def trials_frame() -> pd.DataFrame:
    """Trials 0-2 form the front, 3 is dominated by 1, 4 would dominate everything but was pruned,
    5 failed, 6 is still running, 7 is complete but has a missing metric."""
    rows = [
        (0, "complete", 0.95, 0.10, 0.0, 1e-3, "a"),
        (1, "complete", 0.90, 0.30, 0.1, 2e-3, "b"),
        (2, "complete", 0.70, 0.50, 0.123456, 3e-3, "c"),
        (3, "complete", 0.85, 0.25, 0.2, 4e-3, "d"),
        (4, "pruned", 0.99, 0.99, 0.3, 5e-3, "e"),
        (5, "failed", NAN, NAN, 0.4, 6e-3, "f"),
        (6, "running", 0.98, 0.98, 0.5, 7e-3, "g"),
        (7, "complete", 0.99, NAN, 0.6, 8e-3, "h"),
    ]
    cols = ["trial", "status", "clean_accuracy", "worst_modality_auc_pgd"]
    cols += ["param.model.noise_sigma", "param.train.lr", "param.model.name"]
    return pd.DataFrame(rows, columns=cols)


# ------------------------------------------------------------------------------------------ pareto_ranks


def test_pareto_ranks_hand_worked_mixed_modes_and_tie():
    # column a is maximised, b minimised; rows 0 and 2 are identical and must share rank 1.
    values = np.array(
        [
            [0.90, 0.50],  # 0: front
            [0.80, 0.20],  # 1: front
            [0.90, 0.50],  # 2: tie with 0 -> front
            [0.70, 0.60],  # 3: dominated by 0,1,2,4 and by 6 -> rank 3
            [0.85, 0.30],  # 4: front
            [0.60, 0.10],  # 5: front (best b)
            [0.75, 0.35],  # 6: dominated by 1 and 4 only -> rank 2
            [0.50, 0.90],  # 7: dominated by 3 (rank 3) at the latest -> rank 4
        ]
    )
    np.testing.assert_array_equal(pareto_ranks(values, ["max", "min"]), [1, 1, 1, 3, 1, 1, 2, 4])
    # The modes matter: maximising b makes row 7 (largest b) non-dominated and row 5 (smallest b) dominated.
    flipped = pareto_ranks(values, ["max", "max"])
    assert flipped[7] == 1 and flipped[5] > 1


def test_pareto_ranks_nan_rows_are_unranked_and_ignored():
    values = np.array([[0.5, 0.5], [NAN, 0.9], [0.4, 0.4], [0.99, NAN]])
    ranks = pareto_ranks(values, ["max", "max"])
    assert ranks.dtype.kind == "i"
    # Rows 1 and 3 would dominate nothing here anyway, so check NaN rows don't displace others either.
    np.testing.assert_array_equal(ranks, [1, 0, 2, 0])
    np.testing.assert_array_equal(pareto_ranks(np.full((3, 2), NAN), ["max", "min"]), [0, 0, 0])
    assert pareto_ranks(np.empty((0, 2)), ["max", "min"]).shape == (0,)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pareto_ranks_agree_with_brute_force_dominance(seed):
    rng = np.random.default_rng(seed)
    k = 3
    modes = list(rng.choice(["max", "min"], size=k))
    # Coarse values (one decimal) plus copied rows, so ties and duplicates really occur.
    values = np.round(rng.uniform(0, 1, size=(50, k)), 1)
    values = np.vstack([values, values[:5]])
    ranks = pareto_ranks(values, modes)
    assert ranks.min() == 1 and len(set(ranks)) > 2  # several fronts, else the check below is weak
    n = len(values)
    for i in range(n):
        dominators = [j for j in range(n) if dominates(values[j], values[i], modes)]
        if ranks[i] == 1:
            assert not dominators, f"rank-1 point {i} is dominated by {dominators}"
        else:
            assert dominators, f"point {i} has rank {ranks[i]} but nothing dominates it"
            # Non-dominated sorting: dominated by some point exactly one front up, and by nothing at its own rank
            # or below (every dominator has a strictly lower rank).
            assert any(ranks[j] == ranks[i] - 1 for j in dominators)
            assert all(ranks[j] < ranks[i] for j in dominators)
    # identical rows share a rank
    np.testing.assert_array_equal(ranks[-5:], ranks[:5])


def test_pareto_ranks_rejects_bad_modes_and_shapes():
    with pytest.raises(ConfigError, match="'maximise'"):
        pareto_ranks(np.zeros((2, 2)), ["max", "maximise"])
    with pytest.raises(ConfigError, match="1 mode"):
        pareto_ranks(np.zeros((2, 2)), ["max"])
    with pytest.raises(ConfigError, match="2-D"):
        pareto_ranks(np.zeros(3), ["max"])


# ------------------------------------------------------------------------------------- frames and tables


def test_rank_trials_ranks_only_complete_trials():
    df = trials_frame()
    ranked = rank_trials(df, OBJS)
    assert "pareto_rank" not in df.columns  # a copy, the input is untouched
    ranks = dict(zip(ranked["trial"], ranked["pareto_rank"], strict=True))
    # The pruned trial 4 and running trial 6 would dominate all others if they were ranked.
    assert ranks == {0: 1, 1: 1, 2: 1, 3: 2, 4: 0, 5: 0, 6: 0, 7: 0}
    assert ranked["pareto_rank"].dtype.kind == "i"


def test_front_columns_and_order():
    f = front(trials_frame(), OBJS)
    assert list(f.columns) == [
        "trial",
        "clean_accuracy",
        "worst_modality_auc_pgd",
        "param.model.noise_sigma",
        "param.train.lr",
        "param.model.name",
        "pareto_rank",
    ]
    assert list(f["trial"]) == [0, 1, 2]  # best clean accuracy first
    # Minimising both: trial 3 (0.85, 0.25) now dominates 1 (0.90, 0.30); lowest accuracy comes first.
    objs = [("clean_accuracy", "min", "Clean accuracy"), ("worst_modality_auc_pgd", "min", "AUC")]
    assert list(front(trials_frame(), objs)["trial"]) == [2, 3, 0]


def table_rows(md: str) -> list[list[str]]:
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]


def test_front_markdown_table_and_counts():
    md = front_markdown(trials_frame(), OBJS, title="Sweep 7")
    assert md.startswith("## Sweep 7")
    header = [c.strip() for c in next(ln for ln in md.splitlines() if ln.startswith("|")).strip("|").split("|")]
    assert header == [
        "trial",
        "Clean accuracy",
        "Worst-modality PGD AUC",
        "model.noise_sigma",
        "train.lr",
        "model.name",
    ]
    rows = table_rows(md)
    assert [r[0] for r in rows] == ["0", "1", "2"]
    assert rows[0][1:3] == ["95.00%", "10.00%"]
    assert rows[2][3] == "0.1235"  # 4 significant digits
    assert rows[0][4] == "0.001"
    assert "5 complete trials, 3 on the front; 1 pruned, 1 failed" in md.splitlines()


def test_front_markdown_plain_numbers_outside_unit_interval():
    df = trials_frame()
    df["loss"] = [2.5, 1.25, 0.5, 3.0, 0.1, NAN, 0.1, 9.0]
    md = front_markdown(df, [("clean_accuracy", "max", "Acc"), ("loss", "min", "Loss")])
    rows = {r[0]: r for r in table_rows(md)}
    assert rows["2"][2] == "0.5" and rows["0"][2] == "2.5"  # not shown as %, since a value exceeds 1
    assert rows["0"][1] == "95.00%"


@pytest.mark.parametrize(
    ("objectives", "needle"),
    [
        ([], "no objectives"),
        ([("missing_metric", "max", "M")], "'missing_metric'"),
        ([("clean_accuracy", "up", "Acc")], "'up'"),
        ([("clean_accuracy", "max")], "not a \\(key, mode, label\\)"),
    ],
)
def test_bad_objectives_raise_config_error(objectives, needle):
    with pytest.raises(ConfigError, match=needle):
        rank_trials(trials_frame(), objectives)


# -------------------------------------------------------------------------------------------------- plots


def test_module_does_not_import_heavy_dependencies_at_top_level():
    """The CLI imports this package; ray/optuna/mlflow must never load, and matplotlib or plotly only when plotting."""
    top: set[str] = set()
    everywhere: set[str] = set()
    for source in sorted(Path(pareto_package.__file__).parent.glob("*.py")):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                roots = {n.split(".")[0] for n in names}
                everywhere |= roots
                if node in tree.body:
                    top |= roots
    assert not everywhere & {"ray", "optuna", "mlflow"}
    assert not top & {"matplotlib", "plotly"}
    assert {"matplotlib", "plotly"} <= everywhere  # sanity: the walk does see the lazy imports


def test_plot_front_png(tmp_path):
    import matplotlib.image

    out = plot_front_png(trials_frame(), OBJS, tmp_path / "sub" / "front.png")
    assert out == tmp_path / "sub" / "front.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(out)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200
    assert [p.name for p in out.parent.iterdir()] == ["front.png"]  # no temp file left behind


def test_png_labels_every_point_with_its_trial_number():
    fig = front_matplotlib_figure(trials_frame(), OBJS)
    ax = fig.axes[0]
    labels = {t.get_text(): t for t in ax.texts}
    # Every plotted (ranked) trial, the dominated 3 too; unranked ones (pruned, failed, running, NaN) are not points.
    assert sorted(labels) == ["0", "1", "2", "3"]
    assert labels["3"].get_fontsize() < labels["1"].get_fontsize()


def test_plot_front_png_three_objectives_and_single_objective(tmp_path):
    df = trials_frame()
    objs3 = [*OBJS, ("param.train.lr", "min", "LR")]
    assert plot_front_png(df, objs3, tmp_path / "f3.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConfigError, match="two objectives"):
        plot_front_png(df, OBJS[:1], tmp_path / "f1.png")


def page_without_plotlyjs(text: str) -> str:
    """The page minus the embedded plotly.js library (whose own code mentions URLs it never fetches here)."""
    from plotly.offline import get_plotlyjs

    lib = get_plotlyjs()
    assert text.count(lib) == 1, "plotly.js is not embedded exactly once"
    return text.replace(lib, "")


def page_traces(text: str) -> list[dict]:
    """The traces the page hands to Plotly.newPlot, parsed back from its JSON."""
    start = re.search(r'Plotly\.newPlot\(\s*"pareto-front",\s*', text).end()
    traces, _ = json.JSONDecoder().raw_decode(text, start)
    return traces


def point_traces(fig) -> dict:
    return {t.name: t for t in fig.data if t.mode == "markers+text"}


def test_plot_front_html_is_self_contained_and_deterministic(tmp_path):
    out = plot_front_html(trials_frame(), OBJS, tmp_path / "sub" / "front.html", title="My sweep")
    assert out == tmp_path / "sub" / "front.html"
    assert [p.name for p in out.parent.iterdir()] == ["front.html"]  # no temp file left behind
    text = out.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.I)
    assert not re.search(r"<link\b", text, re.I)
    rest = page_without_plotlyjs(text)
    assert not re.search(r"\b(?:src|href)\s*=|https?:|//cdn", rest, re.I)
    assert "<title>My sweep</title>" in text
    # The front table is rendered server-side, one row per front trial, with the trial counts.
    assert re.findall(r"<tr><td>([^<]*)</td>", text) == ["0", "1", "2"]
    assert "<p>5 complete trials, 3 on the front; 1 pruned, 1 failed</p>" in text
    # The same trials give the same bytes (no random div id).
    again = plot_front_html(trials_frame(), OBJS, tmp_path / "again.html", title="My sweep")
    assert again.read_bytes() == out.read_bytes()


def test_front_plotly_figure_one_trace_per_rank_every_point_labelled():
    fig = front_plotly_figure(trials_frame(), OBJS, title="My sweep")
    points = point_traces(fig)
    # Only ranked (complete, NaN-free) trials are points; the legend lists the front first.
    assert list(points) == ["rank 2", "Pareto front"]  # drawn worst rank first, so the front is on top
    assert sorted(points, key=lambda n: points[n].legendrank) == ["Pareto front", "rank 2"]
    front_trace, dominated = points["Pareto front"], points["rank 2"]
    assert list(front_trace.text) == ["0", "1", "2"] and list(dominated.text) == ["3"]
    assert list(front_trace.x) == [95.0, 90.0, 70.0] and list(front_trace.y) == [10.0, 30.0, 50.0]
    assert front_trace.marker.color == "#d62728" != dominated.marker.color
    (step,) = [t for t in fig.data if t.mode == "lines"]
    assert step.legendgroup == front_trace.legendgroup and step.showlegend is False  # toggled with the front
    assert fig.layout.title.text == "My sweep" and not fig.layout.title.subtitle.text
    assert fig.layout.hovermode == "closest"
    # Hover: trial, rank, every objective (in % like the table) and every param without its prefix.
    for name in ("Clean accuracy", "Worst-modality PGD AUC", "model.noise_sigma", "train.lr", "model.name"):
        assert f"{name}: %{{customdata[" in front_trace.hovertemplate
    assert "param." not in front_trace.hovertemplate
    assert [list(c) for c in front_trace.customdata][2] == [
        "2",
        "Pareto front",
        "70.00%",
        "50.00%",
        "0.1235",
        "0.003",
        "c",
    ]
    assert list(dominated.customdata[0][:2]) == ["3", "rank 2"]


def test_front_plotly_figure_step_line_for_mixed_modes():
    df = pd.DataFrame(
        {
            "trial": [0, 1, 2, 3],
            "status": ["complete"] * 4,
            "acc": [0.9, 0.8, 0.7, 0.6],  # max
            "cost": [5.0, 3.0, 1.0, 4.0],  # min: trial 3 is dominated by 1 and 2
        }
    )
    fig = front_plotly_figure(df, [("acc", "max", "Acc"), ("cost", "min", "Cost")])
    (step,) = [t for t in fig.data if t.mode == "lines"]
    # Best acc first; each corner takes the worse value of both neighbours: next x, previous y.
    assert [[x, y] for x, y in zip(step.x, step.y, strict=True)] == [
        [90.0, 5.0],
        [80.0, 5.0],
        [80.0, 3.0],
        [70.0, 3.0],
        [70.0, 1.0],
    ]
    assert (fig.layout.xaxis.title.text, fig.layout.yaxis.title.text) == ("Acc (%)", "Cost")
    assert list(point_traces(fig)["rank 2"].customdata[0]) == ["3", "rank 2", "60.00%", "4"]


def test_front_plotly_figure_three_objectives_and_no_complete_trials():
    objs3 = [*OBJS, ("param.train.lr", "min", "LR")]
    fig = front_plotly_figure(trials_frame(), objs3)
    assert fig.layout.title.text == "Pareto front"
    assert fig.layout.title.subtitle.text == "showing the first 2 of 3 objectives; ranks use all 3"
    assert "LR: %{customdata[4]}" in point_traces(fig)["Pareto front"].hovertemplate
    pruned = trials_frame().assign(status="pruned")
    empty = front_plotly_figure(pruned, OBJS)
    assert not empty.data and [a.text for a in empty.layout.annotations] == ["no complete trials"]


def test_plot_front_html_survives_script_breaking_param(tmp_path):
    df = trials_frame()
    evil = '</script><script>alert("x")</script><!--'
    df.loc[df["trial"] == 1, "param.model.name"] = evil
    text = plot_front_html(df, OBJS, tmp_path / "front.html", title="<b>%{x}</b>").read_text(encoding="utf-8")
    rest = page_without_plotlyjs(text)
    # Only plotly's three script elements (its config, the library, the newPlot call) close; no data ends one early.
    assert rest.count("</script>") == 3 and "<!--" not in rest and "<script>alert" not in rest
    # The value round-trips through the page's JSON, escaped so plotly.js shows it as text, not markup.
    (front_trace,) = [t for t in page_traces(rest) if t["name"] == "Pareto front"]
    (row,) = [c for c in front_trace["customdata"] if c[0] == "1"]
    assert html.unescape(row[-1]) == evil and "<" not in row[-1]
    assert "&lt;/script&gt;&lt;script&gt;" in text  # and the server-side table shows it escaped
    assert "<title>&lt;b&gt;%{x}&lt;/b&gt;</title>" in text
