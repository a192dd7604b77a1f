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
# pytest-xdist workers: one per core (`auto`); PYTEST_WORKERS=0 runs the suite in one process.
PYTEST_WORKERS ?= auto
TEST_ENV := HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
RUN_ENV := HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 OMP_NUM_THREADS=1

.PHONY: install test conformance demo ablation bench screenshots clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# One pip call; the byte-compiling pip would do file by file on one core is done after, on every core (a few files
# in dependencies are not Python 3 and fail to compile, as they do under pip: that is not an install failure).
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --no-compile $(TORCH_PAIR) -e ".[test]"
	$(PY) -m compileall -q -j 0 $(VENV)/lib >/dev/null 2>&1 || true
	touch $(STAMP)

install: $(STAMP)

# The app's end-to-end test drives Debian's Chromium (Playwright cannot download its own browser here): installed with
# apt-get when missing, as root; anyone else is told the command, and that test fails until it is run.
CHROMIUM := /usr/lib/chromium/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "the browser test needs Chromium at $(CHROMIUM): sudo apt-get install chromium" >&2; \
	fi

# --maxschedchunk 1: workers take tests one at a time (a long test never waits behind another in a worker's queue)
test: $(STAMP) | $(CHROMIUM)
	$(TEST_ENV) $(PY) -m pytest -n $(PYTEST_WORKERS) --maxschedchunk 1 $(PYTEST_ARGS)

# transformers' own common test suites (ModelTesterMixin, ConfigTester, ImageProcessingTestMixin) on emotic's classes,
# from the sdist of the installed transformers (fetched once into ~/.cache/emotic); `make test` runs them too.
conformance: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -rs tests/test_conformance.py $(PYTEST_ARGS)

demo: $(STAMP)
	$(RUN_ENV) $(VENV)/bin/emotic demo --output_dir demo_output

# docs/images/app-*.jpg, the README's pictures of `emotic app`, from the demo's model (made first when missing)
screenshots: $(STAMP) | $(CHROMIUM)
	test -f demo_output/attention/model.safetensors || $(MAKE) demo
	$(RUN_ENV) $(PY) docs/screenshots.py demo_output/attention --output_dir docs/images

# The fusion ablation (`emotic ablate`) on generated data, as `make demo` trains: a tiny encoder pre-trained by MAE on
# the training videos, then every fusion strategy at fusion layers 1 and 3 of its 4 blocks with the same data, seed
# and budget; a table (ablation_output/ablation.md) and a plot (~30 min on 2 cores). Started again, it keeps what
# it finished.
ABLATION := ablation_output
ablation: $(STAMP)
	test -f $(ABLATION)/data/summary.json || $(RUN_ENV) $(VENV)/bin/emotic synth --output_dir $(ABLATION)/data \
		--videos 100 --frames 40 --validation_videos 20 --seed 0
	test -f $(ABLATION)/pretrain/model.safetensors || $(RUN_ENV) $(VENV)/bin/emotic pretrain --model_size tiny \
		--face_dirs $$(for f in $(ABLATION)/data/annotations/Train_Set/*.txt; do \
			echo $(ABLATION)/data/cropped_aligned/$$(basename $$f .txt); done) \
		--output_dir $(ABLATION)/pretrain --num_train_epochs 2 --learning_rate 1.5e-3 --seed 0 \
		--per_device_train_batch_size 32 --save_total_limit 1 --disable_tqdm true --report_to none
	$(RUN_ENV) $(VENV)/bin/emotic ablate $(ABLATION)/data --output_dir $(ABLATION) \
		--model_name_or_path $(ABLATION)/pretrain --strategies none,mean,concat,concat_linear,attention \
		--fusion_layers 1,3 --num_train_epochs 10 --learning_rate 2e-3 --layer_decay 0.9 --drop_path_rate 0.0 \
		--per_device_train_batch_size 32 --save_total_limit 1 --seed 0 --disable_tqdm true --report_to none \
		--smoothing_windows 1,3,5,9

# Real-size speed and memory against transformers and timm, and a video end to end against a pipeline loop, on this
# machine (not part of the tests; ~30 min on 2 cores). The GPU script is benchmarks/bench_gpu.py (see README).
bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) benchmarks/bench_models.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/bench_processor.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/bench_video.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
