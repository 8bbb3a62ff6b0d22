# Two entry points for a fresh clone: `make demo` and `make test`. Both set up .venv first if needed.
# The venv sees the system's site-packages so an already-installed torch (a GPU machine's) is kept;
# only where no torch is importable is the CPU wheel installed. On a CUDA machine, scripts/gpu_check.sh runs the
# kernel tests on the GPU and both benchmarks.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test,tl]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lab demo

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(VENV)/bin/lab bench train

clean:
	rm -rf $(VENV) runs
