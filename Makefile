# seismo — the two commands of the README are `make run` and `make test`.
# Both create .venv and install the project into it when pyproject.toml changes.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast lint bench clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "seismo: $(PYTHON) (3.11) is required" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --progress-bar off -e '.[dev]'
	@touch $(STAMP)

## run: start the whole pipeline (embedded Kafka + worker) on the embedded defaults
run: $(STAMP)
	$(BIN)/seismo run $(ARGS)

## test: run the whole test suite (starts a real Kafka broker once per session)
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## test-fast: unit tests only (no broker, nothing marked slow)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not broker and not slow" $(PYTEST_ARGS)

## lint: ruff + mypy, as configured in pyproject.toml
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .seismo deploy/kafka/target .pytest_cache .mypy_cache .ruff_cache
