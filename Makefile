# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv if missing
# and install the pinned project into it (requirements.lock pins every transitive package).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.anyppg-installed
DEMO   ?= runs/demo
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade "pip==24.3.1" "setuptools<81" wheel
	$(PY) -m pip install -q --disable-pip-version-check -c requirements.lock -e ".[all]"
	@touch $@

demo: setup
	$(VENV)/bin/anyppg data prepare --source synthetic --input "subjects=24,minutes=4,seed=0" \
		--out $(DEMO)/store --overwrite --quiet
	$(VENV)/bin/anyppg data summary $(DEMO)/store

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow and not toolchain" $(PYTEST_ARGS)

bench: setup
	$(PY) -m benchmarks.bench_data

clean:
	rm -rf $(DEMO) .pytest_cache
