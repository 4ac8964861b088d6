# Two commands do all set-up on a fresh machine (README "Quick start"):
#   make demo   install into .venv, render a survey field with the model shipped in trained/
#   make test   install into .venv, run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
DEMO_OUT ?= demo_output

.PHONY: setup test demo benchmarks clean

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

# two pytest-xdist workers (the machines have 2 cores; much of the suite is single-threaded
# GalSim and subprocess start-up), one test file per worker so that module fixtures are
# built once
test: setup
	$(BIN)/python -m pytest -n 2 --dist loadfile

demo: setup
	$(BIN)/galsim-vae demo --out $(DEMO_OUT) --overwrite

benchmarks: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info
