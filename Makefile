# tunehand: `make demo` and `make test` are all a fresh Debian machine needs.
# System packages are installed with apt-get when missing; Python packages go to .venv.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYS_PKGS := libmpv2 gnome-keyring dbus dbus-daemon sox libsox-fmt-all lame flac vorbis-tools libcairo2 mpc mpd openssl zsh fish playerctl
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint unit bench screenshots sysdeps deps clean

sysdeps:
	@missing=""; for p in $(SYS_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "tunehand needs Python 3.11 or newer"; exit 1; }
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

deps: sysdeps $(STAMP)

demo: deps
	@$(BIN)/tunehand demo

lint: deps
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy --strict src
	$(BIN)/lint-imports

unit: deps
	$(BIN)/pytest -q

test: lint unit

bench: deps
	$(BIN)/python -m bench

screenshots: deps
	$(BIN)/python -m tunehand.tui.screenshots screenshots

clean:
	rm -rf $(VENV) .demo .bench .mypy_cache .ruff_cache .pytest_cache
