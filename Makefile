# Two set-up-free entry points: `make demo` (the main job) and `make test`.
# Each creates .venv on first use. On a machine without CUDA, torch resolves to the
# CPU build from the local wheel store (pip's find-links), never the CUDA stack.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# make demo DATA=dir SERIES=n analyses another dataset (generated there when missing); by
# default the demo's own held-out sample (lungmonai.demo --help).
DATA ?=
SERIES ?=
WHEELS := $(wildcard /opt/wheels)

.PHONY: demo test venv clean-data

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@# CPU build of torch first, so that nothing later pulls the CUDA stack: the local wheel
	@# store when the machine has one, else PyTorch's CPU index unless a GPU is present.
	if [ -n "$(WHEELS)" ]; then $(PY) -m pip install -q --find-links $(WHEELS) "torch==2.13.0"; \
	elif command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install -q "torch>=2.4,<2.14"; \
	else $(PY) -m pip install -q --index-url https://download.pytorch.org/whl/cpu "torch>=2.4,<2.14"; fi
	$(PY) -m pip install -q $(if $(WHEELS),--find-links $(WHEELS)) -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m lungmonai.demo $(if $(DATA),--dataset_dir $(DATA)) $(if $(SERIES),--series $(SERIES))

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests

clean-data:
	rm -rf $(or $(DATA),data/luna16_demo_heldout)
