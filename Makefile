# Two commands set everything up on a fresh machine:
#   make test   creates .venv if missing, installs emotic with its test extras, runs the test suite
#   make demo   the main job end to end on the embedded default (see README)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.emotic-installed
# timm (the parity tests' reference implementation) imports torchvision, and torchvision only imports beside the
# torch build it was made for: torch 2.14.1 + torchvision 0.29.1 is that pair (both on this machine's wheel store).
TORCH_PAIR ?= torch==2.14.1 torchvision==0.29.1
TEST_ENV := HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false

.PHONY: install test conformance demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet $(TORCH_PAIR)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

# transformers' own common test suites (ModelTesterMixin, ConfigTester, ImageProcessingTestMixin) on emotic's classes,
# from the sdist of the installed transformers (fetched once into ~/.cache/emotic); `make test` runs them too.
conformance: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -rs tests/test_conformance.py $(PYTEST_ARGS)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 OMP_NUM_THREADS=1 $(VENV)/bin/emotic demo --output_dir demo_output

# Real-size speed and memory against transformers and timm on this machine (not part of the tests; ~15 min on 2
# cores). The GPU script is benchmarks/bench_gpu.py (see README).
bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) benchmarks/bench_models.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/bench_processor.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
