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

.PHONY: install test conformance demo ablation bench clean

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

# The fusion ablation (`emotic ablate`) on generated data: every fusion strategy at fusion layers 1-3 of the tiny
# encoder, the same data, seed and budget, then a table (ablation_output/ablation.md) and a plot (~12 min on 2 cores).
ablation: $(STAMP)
	test -f ablation_output/data/summary.json || HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(VENV)/bin/emotic synth \
		--output_dir ablation_output/data --videos 120 --frames 40 --validation_videos 24 --seed 0
	HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 OMP_NUM_THREADS=1 $(VENV)/bin/emotic ablate ablation_output/data \
		--output_dir ablation_output --strategies none,mean,concat,concat_linear,attention --fusion_layers 1,2,3 \
		--model_size tiny --num_train_epochs 5 --learning_rate 2e-3 --layer_decay 0.9 --drop_path_rate 0.0 \
		--per_device_train_batch_size 32 --save_total_limit 1 --seed 0 --disable_tqdm true --report_to none \
		--smoothing_windows 1,3,5,9

# Real-size speed and memory against transformers and timm on this machine (not part of the tests; ~15 min on 2
# cores). The GPU script is benchmarks/bench_gpu.py (see README).
bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) benchmarks/bench_models.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/bench_processor.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
