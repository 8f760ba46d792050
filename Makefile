# The two commands: `make demo` and `make test`. Both create the virtual environment when missing.
# `make test-fast`: the suite without the tests marked slow (pipelines, SMOKE, kill-and-resume), for edits.
PY ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
DEMO_DIR ?= demo_out

.PHONY: demo test test-fast venv clean-demo visdom-assets

$(VENV)/.installed: requirements.txt
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q "setuptools<81" wheel
	$(PYTHON) -m pip install -q --no-build-isolation -r requirements.txt
	bash scripts/fetch_tcmalloc.sh $(VENV)
	touch $@

venv: $(VENV)/.installed

# the optional --logger backends (TensorBoard, W&B), which the tests exercise
$(VENV)/.loggers: requirements-loggers.txt $(VENV)/.installed
	$(PYTHON) -m pip install -q -r requirements-loggers.txt
	touch $@

# the tests' CPU training runs on tcmalloc/jemalloc where installed: the launcher sets LD_PRELOAD (cpu/launch.py;
# scripts/demo.sh launches its train.py the same way)
test: venv $(VENV)/.loggers
	$(PYTHON) -m cpu.launch -- $(PYTHON) -m pytest -q -p no:cacheprovider tests

test-fast: venv $(VENV)/.loggers
	$(PYTHON) -m cpu.launch -- $(PYTHON) -m pytest -q -p no:cacheprovider -m "not slow" tests

demo: venv
	PYTHON=$(PYTHON) DEMO_DIR=$(DEMO_DIR) bash scripts/demo.sh

clean-demo:
	rm -rf $(DEMO_DIR)

visdom-assets: venv
	$(PYTHON) -m util.visdom_server --install-assets
