# flowpin — see README.md. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)

.PHONY: demo test unit e2e lint crds bench control-plane venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

# Builds tools/control-plane once into ~/.cache/flowpin/control-plane/<hash>/ (minutes).
control-plane: venv
	$(PY) -m controller.testing build

demo: control-plane
	$(PY) -m controller.testing.demo

test: control-plane
	$(PY) -m pytest

unit: venv
	$(PY) -m pytest tests/unit

e2e: control-plane
	$(PY) -m pytest tests/e2e

lint: venv
	$(VENV)/bin/ruff check controller tests bench
	$(VENV)/bin/ruff format --check controller tests bench
	$(VENV)/bin/mypy

crds: venv
	$(PY) -m controller.api.crds crds

bench: control-plane
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
