# The two commands: `make demo` (the main job on the embedded default) and `make test`.
# Both create the virtual environment and install the project on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# the smoke GMCWD sweep: six Ray Tune trials, Optuna, MLflow; prints the Pareto front and the
# `mlflow ui` command (runs/demo is rebuilt on every call)
demo: $(STAMP)
	rm -rf runs/demo
	$(PY) sweeps/gmcwd_weights.py --smoke --out runs/demo

test: $(STAMP)
	$(PY) -m pytest
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check robustmm tests bench

bench: $(STAMP)
	$(PY) bench/grid_eval.py
	$(PY) bench/sweep_overhead.py

clean:
	rm -rf $(VENV) runs .pytest_cache
