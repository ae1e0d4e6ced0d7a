# curation: every stage is a `curate` command and a make target.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RECIPE ?= recipes/demo.yaml
EXTRAS ?= dev,local

.PHONY: install test bench demo clean schema

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel setuptools

# Reinstall only when the project's dependencies change. llama-cpp-python (extra `local`)
# compiles from source once (about 7 minutes on 2 cores); pip caches the wheel.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

schema: $(STAMP)
	$(BIN)/curate schema --out schemas

clean:
	rm -rf runs .pytest_cache
