# Two commands for a fresh machine: `make demo` and `make test`.
# Both create .venv if needed and install once (torch's CPU wheel first); `make demo`
# installs only the package, `make test` adds the dev extras. A second run reinstalls
# nothing unless pyproject.toml/setup.py changed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mtl-bt-installed
APP    := $(VENV)/.mtl-bt-app-installed
TORCH  ?= torch==2.13.0

.PHONY: install install-app demo test lint bench clean

# `install`: the package and the dev extras (tests, lint, benchmarks: ray, scipy, hypothesis).
install: $(STAMP)

# `install-app`: only the package and what it needs at run time (what `make demo` uses).
install-app: $(APP)

define venv
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "mtl-bt needs Python >= 3.11"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
endef

$(STAMP): pyproject.toml setup.py
	$(venv)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP) $(APP)

$(APP): pyproject.toml setup.py
	$(venv)
	$(BIN)/python -m pip install --quiet -e .
	@touch $(APP)

demo: install-app
	$(BIN)/mtl-bt demo

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
