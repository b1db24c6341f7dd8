# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv if missing
# and install the pinned project into it (requirements.lock pins every transitive package).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.anyppg-installed
PYTEST_ARGS ?=

.PHONY: setup system-deps demo test test-fast bench clean

# Debian packages for the firmware and MCU tests and the report screenshot: the Cortex-M
# cross-compiler and newlib, QEMU, clang (libFuzzer, sanitizers) and headless Chromium.
# Installed as root where apt is available; elsewhere the tests that need them skip with a reason.
APT_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm clang libclang-rt-14-dev chromium

setup: $(STAMP)

system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
		if [ -n "$$missing" ]; then echo "apt-get install$$missing"; \
			(apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			 --no-install-recommends $$missing >/dev/null) || echo "system-deps: apt failed; those tests will skip"; fi; \
	else echo "system-deps: not root or no apt; firmware/MCU/browser tests skip where tools are absent"; fi

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade "pip==24.3.1" "setuptools<81" wheel
	$(PY) -m pip install -q --disable-pip-version-check -c requirements.lock -e ".[all]"
	@touch $@

# The embedded default: synthetic paired ECG/PPG -> store -> teacher -> probes -> student -> QAT
# -> int8 TFLite -> C bundle -> simulated Cortex-M4 -> benchmark, then the report. Unchanged stages
# are skipped on a second run; an interrupted run resumes (see anyppg/pipeline.py).
demo: setup
	$(VENV)/bin/anyppg pipeline --config demo --out runs/demo
	@echo "report: $(CURDIR)/runs/demo/report.html (and report.md)"

test: setup system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow and not toolchain" $(PYTEST_ARGS)

bench: setup
	$(PY) -m benchmarks.bench_data

clean:
	rm -rf runs/demo .pytest_cache
