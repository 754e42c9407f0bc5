"""The README's defaults are the code's: the YAML block of "The config file" holds the defaults of
robustmm/config.py (and of the default model and dataset), the sentence under it names exactly the
keys configs/thesis.yaml changes, and `robustmm run --help` states the same defaults."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import yaml

from robustmm import config as C
from robustmm.cli import parser
from robustmm.data import DATASETS
from robustmm.models import MODELS
from robustmm.models.base import model_defaults

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def _section(heading: str) -> str:
    """The README's text from `heading` to the next heading of any level."""
    start = README.index(f"\n{heading}\n") + len(heading) + 2
    end = re.search(r"\n#+ ", README[start:])
    return README[start : start + end.start()] if end else README[start:]


def _config_block() -> dict[str, Any]:
    text = _section("### The config file")
    return yaml.safe_load(text.split("```yaml\n", 1)[1].split("```", 1)[0])


def test_the_config_block_holds_every_section_and_the_defaults_of_the_code():
    block = _config_block()
    defaults = C.RunConfig().to_dict()
    assert list(block) == list(C.SECTIONS)
    for section in ("train", "classifier", "eval"):  # every key, each the code's default
        assert block[section] == defaults[section], section
    assert C.parse_seeds(block["seeds"]) == C.RunConfig.seeds
    assert block["device"] == C.RunConfig.device


def test_the_config_blocks_model_and_dataset_are_the_defaults_and_their_options_the_defaults():
    block = _config_block()
    model, dataset = dict(block["model"]), dict(block["dataset"])
    assert model.pop("name") == C.RunConfig.model
    own = model_defaults(C.RunConfig.model)
    assert model and all(own[key] == value for key, value in model.items()), (model, own)
    assert dataset.pop("name") == C.RunConfig.dataset
    assert dataset.pop("data_dir") is None
    entry = DATASETS.get(C.RunConfig.dataset)
    assert dataset and all(entry.defaults[key] == value for key, value in dataset.items()), (dataset, entry.defaults)


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key != "recon_weights":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _resolved(cfg: C.RunConfig) -> dict[str, Any]:
    """The config's every key with the model's and dataset's defaults filled in, reconstruction
    weights as the model uses them (null is 1/M each)."""
    raw = cfg.to_dict()
    raw["model"] = {**model_defaults(cfg.model), **raw["model"]}
    raw["dataset"] = {**DATASETS.get(cfg.dataset).defaults, **raw["dataset"]}
    options = MODELS.get(cfg.model).cls.Options(recon_weights=raw["model"]["recon_weights"])
    raw["model"]["recon_weights"] = options.weights(raw["dataset"]["modalities"])  # type: ignore[attr-defined]
    return _flat(raw)


def test_the_readme_names_the_keys_configs_thesis_yaml_changes():
    thesis = _resolved(C.from_dict(C.load_yaml(REPO / "configs" / "thesis.yaml")))
    default = _resolved(C.from_dict({}))
    changed = {key for key, value in thesis.items() if default[key] != value}
    sentence = next(p for p in _section("### The config file").split("\n\n") if p.startswith("`configs/thesis.yaml`"))
    named = {word for word in re.findall(r"`([^`]+)`", sentence) if word != "configs/thesis.yaml"}
    assert named == changed


def _run_help() -> dict[str, str]:
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.option_strings[0]: a.help or "" for a in sub.choices["run"]._actions if a.option_strings}


def test_robustmm_run_help_states_the_defaults_of_the_code():
    helps = _run_help()
    stated = {
        "--model": C.RunConfig.model,
        "--dataset": C.RunConfig.dataset,
        "--grid": C.EvalConfig.grid,
        "--seeds": ",".join(map(str, C.RunConfig.seeds)),
        "--split": C.EvalConfig.split,
    }
    for flag, value in stated.items():
        assert re.search(rf"default {re.escape(value)}\b", helps[flag]), (flag, helps[flag])
    assert helps["--device"].startswith(f"{C.RunConfig.device} (default)")
