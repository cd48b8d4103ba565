# edged: two commands on a fresh Debian / Raspberry Pi OS box.
#   make run    set up .venv with pinned dependencies, prepare ./var, start the daemon on embedded defaults
#   make test   install what the tests need (incl. the Debian mosquitto package) and run the suite
#   make bench  ingest benchmarks, results as JSON under bench/results/

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# apt-get only when a needed tool is missing; quiet and non-interactive so CI can run it.
APT    := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: run test bench state sysdeps test-sysdeps clean

$(PY):
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { $(APT) update -q && $(APT) install -y -q python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.installed: pyproject.toml constraints.txt | $(PY)
	$(PIP) install -q -c constraints.txt -e .
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -c constraints.txt -e '.[test]'
	@touch $@

state:
	@mkdir -p var/logs

run: $(VENV)/.installed state
	$(VENV)/bin/edged run

test-sysdeps:
	@[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || { \
		echo "installing the Debian mosquitto package (the tests start their own brokers on free ports)"; \
		$(APT) update -q && $(APT) install -y -q --no-install-recommends mosquitto; }

test: $(VENV)/.installed-test test-sysdeps
	$(PY) -m pytest

bench: $(VENV)/.installed-test test-sysdeps
	$(PY) -m bench

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
