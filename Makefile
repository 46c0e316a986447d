# seismo — the two commands of the README are `make run` and `make test`.
# Both create .venv and install the project into it when pyproject.toml changes.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

SYSTEM_STAMP := $(VENV)/.system-deps

.PHONY: run test test-fast lint bench clean system-deps lock

# Installs come from requirements.lock (every package, transitive ones and the build's Cython
# and setuptools included), so a fresh machine gets exactly what CI tested; pyproject.toml keeps
# the ranges. `make lock` refreshes the lock from those ranges.
LOCK := requirements.lock

$(STAMP): pyproject.toml setup.py $(LOCK) $(wildcard streams/_*.pyx streams/_*.pxd)
	@command -v $(PYTHON) >/dev/null || { echo "seismo: $(PYTHON) (3.11) is required" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --progress-bar off -r $(LOCK)
	$(BIN)/pip install --quiet --progress-bar off --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	@touch $(STAMP)

## lock: re-resolve every dependency from pyproject.toml's ranges into requirements.lock
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet $$($(PYTHON) -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires']))")
	.lock-venv/bin/pip install --quiet --no-build-isolation -e '.[dev]'
	{ echo "# seismo's locked dependencies: written by 'make lock' from pyproject.toml's ranges; do not edit."; \
	  .lock-venv/bin/pip freeze --all --exclude-editable | LC_ALL=C sort -f; } > $(LOCK)
	rm -rf .lock-venv
	@echo "seismo: $(LOCK) rewritten; 'make test' installs from it"

## run: start the whole pipeline (embedded Kafka + worker) on the embedded defaults
run: $(STAMP)
	$(BIN)/seismo run $(ARGS)

# Debian packages listed in deploy/apt-packages.txt (real Prometheus, Chromium, ...),
# installed once when missing; needs root or sudo, as on the CI machine.
$(SYSTEM_STAMP): deploy/apt-packages.txt $(STAMP)
	@pkgs="$$(sed -e 's/#.*//' deploy/apt-packages.txt | xargs)"; \
	missing=""; for p in $$pkgs; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "seismo: installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@touch $(SYSTEM_STAMP)

system-deps: $(SYSTEM_STAMP)

## test: run the whole test suite (starts a real Kafka broker once per session)
test: $(STAMP) $(SYSTEM_STAMP)
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
