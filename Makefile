# vistrace — the two commands a new user needs:
#   make demo   set everything up, then run the example programs and write their reports
#   make test   set everything up, then run the test suite
# Both are idempotent: the second run only re-installs when pyproject.toml changed.

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: setup demo test test-all bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/vistrace demo examples/manifest.json --out runs/demo

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) bench/interpreter.py

clean:
	rm -rf runs .pytest_cache
