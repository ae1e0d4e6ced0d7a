# curation: every stage is a `curate` command and a make target.
#   make test                 install into .venv (once) and run the test suite
#   make demo                 the whole pipeline on the embedded local model -> runs/demo/
#   make bench                every stage's benchmark; figures in docs/*.md
#   make STAGE RECIPE=FILE    one stage of a recipe (ingest evolve respond filter dedup tag pack report card)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RECIPE ?= recipes/demo.yaml
EXTRAS ?= dev,local
STAGES := ingest evolve respond filter dedup tag pack report card

.PHONY: install test bench demo run clean schema $(STAGES)

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

demo: $(STAMP)
	$(BIN)/curate run recipes/demo.yaml
	cp runs/demo/card.md data_cards/demo.md
	@echo
	@echo "demo done: shards in runs/demo/pack/, Table 1 in runs/demo/report/report.md,"
	@echo "chart in runs/demo/report/category_tokens.png, card in runs/demo/card.md (copied to data_cards/demo.md)"

run: $(STAMP)
	$(BIN)/curate run $(RECIPE)

$(STAGES): $(STAMP)
	$(BIN)/curate run $(RECIPE) --from $@ --to $@

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

schema: $(STAMP)
	$(BIN)/curate schema --out schemas

clean:
	rm -rf runs .pytest_cache
