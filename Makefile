# The two commands: `make demo` (the main job on the embedded default) and `make test`.
# Both create the virtual environment and install the project on first use.
# `make test-fast` is the inner loop: the tests not marked slow (no Ray, no end-to-end
# training), then the same import rules and ruff; `make test` (and .ci/run) runs them all.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-fast lint bench screenshots clean

$(STAMP): pyproject.toml
	@echo "make: first install: creating $(VENV) and installing robustmm with its pinned dependencies"
	@echo "make: (torch 2.14.1 with the CUDA libraries its wheel pulls even without a GPU, Ray, Optuna,"
	@echo "make: MLflow, pandas, pyarrow, matplotlib, plotly): about 3 GB of wheels, 6.5 GB in $(VENV);"
	@echo "make: about 2 minutes from a local package mirror, longer when they are downloaded"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --progress-bar on --upgrade pip
	$(PY) -m pip install --progress-bar on -e '.[test]'
	touch $(STAMP)

# the smoke GMCWD sweep: six Ray Tune trials, Optuna, MLflow; prints the Pareto front and the
# `mlflow ui` command (runs/demo is rebuilt on every call, and says so)
demo: $(STAMP)
	@if [ -e runs/demo ]; then echo "make demo: removing the previous demo's runs/demo"; rm -rf runs/demo; fi
	$(PY) sweeps/gmcwd_weights.py --smoke --out runs/demo

# Each check runs even when an earlier one failed; a summary of all three ends the output and
# the exit status is non-zero when any failed.
CHECKS_START = fail=0; summary=""; \
	check() { name=$$1; shift; echo "make: $$name: $$*"; "$$@"; rc=$$?; \
	if [ $$rc -eq 0 ]; then result=passed; else result="FAILED (exit $$rc)"; fail=1; fi; \
	summary="$$summary$$(printf '\n  %-13s %s' "$$name" "$$result")"; }
CHECKS_END = check lint-imports $(VENV)/bin/lint-imports; \
	check ruff $(VENV)/bin/ruff check robustmm tests bench docs sweeps; \
	printf '\nmake $@:%s\n' "$$summary"; exit $$fail

test: $(STAMP)
	@$(CHECKS_START); check pytest $(PY) -m pytest; $(CHECKS_END)

test-fast: $(STAMP)
	@$(CHECKS_START); check pytest $(PY) -m pytest -m "not slow"; $(CHECKS_END)

lint: $(STAMP)
	@$(CHECKS_START); $(CHECKS_END)

bench: $(STAMP)
	$(PY) bench/grid_eval.py
	$(PY) bench/sweep_overhead.py

# the README's pictures of the MLflow run table, a trial's charts and the front, from a fresh
# smoke sweep; needs Debian's chromium (apt-get install chromium); rerun when what the UI
# shows changes
screenshots: $(STAMP)
	$(PY) -m pip install --progress-bar on -e '.[screenshots]'
	$(PY) docs/screenshots.py

clean:
	rm -rf $(VENV) runs .pytest_cache
