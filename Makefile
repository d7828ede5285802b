# nsnn: two commands do all setup on a fresh machine.
#   make train   create .venv if missing, install, run `bash run_training.sh`
#   make test    create .venv if missing, install, run the full test suite
#
# Torch is installed first and never replaced afterwards:
#   * a torch already importable in the venv is kept (GPU users: install your CUDA build first,
#     e.g. `.venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cu128`);
#   * else a local CPU wheel found through pip's find-links is used when present;
#   * else, with a working NVIDIA driver (`nvidia-smi -L` lists a GPU), PyPI's torch (the CUDA build);
#   * else the CPU-only index, so a CPU machine never downloads CUDA packages.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
STAMP := $(VENV)/.nsnn-installed
PYTEST_ARGS ?=
TRITON_VERSION ?= 3.9.0
TRITON_DIR := $(VENV)/triton-$(TRITON_VERSION)

.PHONY: install train test check-triton lint bench clean

install: $(STAMP)

# The venv is made only where there is none, or where its interpreter is gone (a dangling link, made
# again in place); an existing venv is never cleared, so a torch installed in it is kept. One without
# pip (`uv venv`, `python3 -m venv --without-pip`) is given pip by its own interpreter's ensurepip.
$(PY):
	@for f in $(VENV)/bin/python*; do [ -e "$$f" ] || rm -f "$$f"; done
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml setup.py requirements.txt constraints.txt $(wildcard nsnn/csrc/*)
	@$(PIP) --version >/dev/null 2>&1 || $(PY) -m ensurepip --upgrade >/dev/null || { \
		echo "[nsnn] $(VENV) has no pip and ensurepip could not install it: install pip into it" \
			"(e.g. \`uv pip install --python $(PY) pip\`), then run make again" >&2; \
		exit 1; }
	@if $(PY) -c "import torch" 2>/dev/null; then \
		echo "[nsnn] keeping installed torch $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	elif $(PIP) download -q --no-deps --no-index torch==$(TORCH_VERSION) -d $(VENV)/.torch-probe >/dev/null 2>&1; then \
		echo "[nsnn] installing local torch==$(TORCH_VERSION) wheel"; \
		$(PIP) install -q torch==$(TORCH_VERSION); \
	elif nvidia-smi -L >/dev/null 2>&1; then \
		echo "[nsnn] NVIDIA driver found: installing CUDA torch==$(TORCH_VERSION) from PyPI"; \
		$(PIP) install -q torch==$(TORCH_VERSION); \
	else \
		echo "[nsnn] no GPU: installing CPU-only torch==$(TORCH_VERSION)"; \
		$(PIP) install -q torch==$(TORCH_VERSION) --index-url $(TORCH_CPU_INDEX); \
	fi
	@rm -rf $(VENV)/.torch-probe
	$(PIP) install -q -c constraints.txt -r requirements.txt
	$(PIP) install -q -c constraints.txt --no-build-isolation --no-deps -e .
	@if $(PY) -c "import torch, nsnn.functional.native as n; built = n.is_available(); \
		print('[nsnn] ready: torch', torch.__version__, '| cuda', torch.cuda.is_available(), \
		'| C++ kernels', 'built' if built else 'NOT built'); raise SystemExit(not built)" \
		|| [ "$${NSNN_BUILD_NATIVE:-1}" = 0 ]; then touch $(STAMP); else \
		echo "[nsnn] the C++ kernels did not build (the pure-torch path runs); the next make retries"; fi

train: install
	PATH="$(abspath $(VENV))/bin:$$PATH" PYTHON="$(abspath $(PY))" bash run_training.sh

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The Triton (CUDA) kernels without a GPU: Triton, installed into a folder beside the venv's packages
# (so `make test` never imports it), runs them by its interpreter on CPU tensors under the neuron tests
# of tests/test_cuda.py (tests/triton_interpreter.py). A few minutes; not part of `make test`.
check-triton: install
	@[ -f $(TRITON_DIR)/.installed ] || { $(PIP) install -q --target $(TRITON_DIR) triton==$(TRITON_VERSION) \
		&& touch $(TRITON_DIR)/.installed; }
	PYTHONPATH="$(abspath $(TRITON_DIR))" $(PY) -m pytest -q -p tests.triton_interpreter tests/test_cuda.py $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check nsnn scripts examples visualizer tests bench

bench: install
	$(PY) bench/neurons.py
	$(PY) bench/train_step.py
	$(PY) bench/stdp.py

clean:
	rm -rf $(VENV) build *.egg-info nsnn/_C*.so
