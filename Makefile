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

demo: $(STAMP)
	$(VENV)/bin/robustmm run --model gmcwd --dataset synth-mhd --grid smoke --seeds 0-1 --out runs/demo

test: $(STAMP)
	$(PY) -m pytest
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check robustmm tests bench

bench: $(STAMP)
	$(PY) bench/grid_eval.py

clean:
	rm -rf $(VENV) runs .pytest_cache
