# flowpin — see README.md. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Installs come from requirements/dev.txt (every package pinned with hashes, `make lock`);
# the downloaded wheels are cached outside the clone, keyed by the lock's hash.
CACHE ?= $(or $(FLOWPIN_CACHE),$(HOME)/.cache/flowpin)
LOCK := requirements/dev.txt
LOCK_HASH := $(shell sha256sum $(LOCK) | cut -c1-16)
WHEELS := $(CACHE)/wheels/$(LOCK_HASH)
STAMP := $(VENV)/.installed-$(LOCK_HASH)-$(shell sha256sum pyproject.toml | cut -c1-8)
UV_COMPILE := uv pip compile --generate-hashes --universal --python-version 3.11 --quiet
UPGRADE ?= --upgrade

.PHONY: demo test unit e2e fuzz lint crds bench control-plane venv lock clean

$(STAMP): $(LOCK) pyproject.toml
	@echo "== venv $(VENV) from $(LOCK) (sha256 $(LOCK_HASH)), hashes required; wheels in $(WHEELS)"
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	@# The venv's own pip (ensurepip) fetches the wheels once per lock: no pip on the system
	@# is needed, and nothing is upgraded in passing.
	test -f $(WHEELS)/.complete || ( rm -rf $(WHEELS).partial \
		&& $(PY) -m pip download --quiet --disable-pip-version-check --only-binary :all: \
			--no-deps --require-hashes -r $(LOCK) -d $(WHEELS).partial \
		&& rm -rf $(WHEELS) && mv $(WHEELS).partial $(WHEELS) && touch $(WHEELS)/.complete )
	$(PY) -m pip install --quiet --disable-pip-version-check --no-index --find-links $(WHEELS) \
		--no-deps --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-index --no-deps \
		--no-build-isolation -e .
	$(PY) -m pip check
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

# A fuzz campaign (tests/fuzz; `make test` runs the same suite with a small fixed budget):
# `make fuzz`, or `FUZZ_EXAMPLES=500 FUZZ_SEED=1234 make fuzz`. Reproduce a failure with the
# FUZZ_SEED printed in pytest's header and the same FUZZ_EXAMPLES.
fuzz: control-plane
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-2000} FUZZ_SEED=$${FUZZ_SEED:-random} FUZZ_SHRINK=1 \
		$(PY) -m pytest tests/fuzz -o timeout=0 --hypothesis-show-statistics

lint: venv
	$(VENV)/bin/ruff check controller tests bench
	$(VENV)/bin/ruff format --check controller tests bench
	$(VENV)/bin/mypy

crds: venv
	$(PY) -m controller.api.crds crds

bench: control-plane
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

# Re-resolves the locks from pyproject.toml (newest allowed; `make lock UPGRADE=` keeps pins).
lock: venv
	cd requirements && $(abspath $(VENV))/bin/$(UV_COMPILE) $(UPGRADE) ../pyproject.toml \
		--extra dev -o dev.txt
	cd requirements && $(abspath $(VENV))/bin/$(UV_COMPILE) ../pyproject.toml -c dev.txt \
		-o runtime.txt
	cd requirements && $(abspath $(VENV))/bin/$(UV_COMPILE) build.in -c dev.txt -o build.txt

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
