# The two commands: `make dev` brings the stack up locally, `make test` runs the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: dev test test-fast lint lock bench bench-deps clean

$(BIN)/.installed: requirements.txt requirements/dev.txt pyproject.toml
	bash ops/scripts/dev_system_packages.sh
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt -r requirements/dev.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

dev: $(BIN)/.installed
	$(BIN)/python -m app.dev up

test: $(BIN)/.installed
	bash ops/scripts/dev_system_packages.sh --test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The tests that need no worker processes, container or fault injection (a minute or two).
test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -m "not faults and not soak and not e2e" $(PYTEST_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

lock:
	cd requirements && ../$(BIN)/pip-compile -q --strip-extras --no-header --no-emit-index-url \
		--no-emit-find-links --output-file ../requirements.txt runtime.in
	cd requirements && ../$(BIN)/pip-compile -q --strip-extras --no-header --no-emit-index-url \
		--no-emit-find-links --output-file dev.txt dev.in

bench: $(BIN)/.installed
	$(BIN)/python bench/training.py
	$(BIN)/python bench/pipeline.py

# vectorbt for bench/training.py's side-by-side figures, in a virtualenv of its own: its
# dependencies (scikit-learn, pandas) would change what a job imports in the project's one.
bench-deps: .venv-bench/bin/.installed

.venv-bench/bin/.installed: requirements.txt requirements/bench.txt
	$(PY) -m venv .venv-bench
	.venv-bench/bin/pip install -q -r requirements.txt -r requirements/bench.txt
	.venv-bench/bin/pip install -q --no-deps -e .  # trad itself: its strategies are entry points
	touch $@

clean:
	rm -rf $(VENV) .venv-bench var
