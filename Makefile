# tunehand: `make demo` and `make test` are all a fresh Debian machine needs.
# System packages are installed with apt-get when missing (each target only what it
# needs); Python packages go to .venv, exactly as pinned (with hashes) in requirements.lock.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# What `make demo` (and a user's player) needs: libmpv, a keyring, a session bus, sox
# (with its MP3/Ogg formats) to generate the demo library, and ffmpeg, with which the
# server transcodes.
RUN_PKGS := libmpv2 gnome-keyring dbus dbus-daemon sox libsox-fmt-all ffmpeg
# What the test suite adds: real third-party clients (mpc, playerctl), shells for the
# completion scripts, lame for audio, openssl for TLS certificates, cairo for the
# screenshots, Chromium and its WebDriver for the web app (headless), and the PostgreSQL
# and Redis servers it starts throwaway copies of.
TEST_PKGS := $(RUN_PKGS) lame libcairo2 mpc playerctl openssl zsh fish postgresql redis-server chromium chromium-driver
# What `make bench` adds: a real mpd to compare `tunehand mpd` with.
# The system services that mpd, redis-server and postgresql install are stopped and
# disabled right after they are installed here (mpd's would take :6600, `tunehand mpd`'s
# default port; the tests and benches start throwaway servers of their own).
BENCH_PKGS := $(TEST_PKGS) mpd pulseaudio mpv
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
LOCK_ARGS := --quiet --universal --generate-hashes --python-version 3.11 --extra dev

.PHONY: demo test lint unit bench screenshots sysdeps sysdeps-test sysdeps-bench deps lock upgrade clean

define apt_install
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	  for p in $$missing; do \
	    case $$p in mpd) units="mpd.socket mpd";; redis-server) units=redis-server;; postgresql) units=postgresql;; *) continue;; esac; \
	    echo "stopping and disabling the system service of $$p (tests start their own)"; \
	    for u in $$units; do \
	      if [ -d /run/systemd/system ]; then $(SUDO) systemctl disable --now $$u >/dev/null 2>&1; \
	      else $(SUDO) invoke-rc.d $$u stop >/dev/null 2>&1; $(SUDO) update-rc.d $$u disable >/dev/null 2>&1; fi; \
	    done; \
	  done; \
	fi; true
endef

sysdeps:
	$(call apt_install,$(RUN_PKGS))

sysdeps-test:
	$(call apt_install,$(TEST_PKGS))

sysdeps-bench:
	$(call apt_install,$(BENCH_PKGS))

# The venv is made anew whenever the lock or the project's metadata changes, so it holds
# exactly what requirements.lock pins (pip checks every file against its hash).
$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "tunehand needs Python 3.11 or newer"; exit 1; }
	@rm -rf $(VENV)
	@$(PYTHON) -m venv $(VENV)
	@echo "installing Python packages from requirements.lock into $(VENV)"
	@$(BIN)/python -m pip install -q --require-hashes --no-deps -r requirements.lock
	@$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

deps: sysdeps $(STAMP)

demo: deps
	@$(BIN)/tunehand demo

lint: $(STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy --strict src
	$(BIN)/lint-imports

unit: sysdeps-test $(STAMP)
	$(BIN)/pytest -q

test: sysdeps-test lint unit

bench: sysdeps-bench $(STAMP)
	$(BIN)/python -m bench

screenshots: sysdeps-test $(STAMP)
	$(BIN)/python -m tunehand.tui.screenshots screenshots
	$(BIN)/python -m tests.screenshots_web screenshots

# Re-resolve requirements.lock after a change to pyproject.toml, keeping every other pin;
# `make upgrade` moves every pin to the newest release the ranges allow. Both on purpose:
# run the tests, then commit the lock with the change.
lock: $(STAMP)
	$(BIN)/uv pip compile $(LOCK_ARGS) pyproject.toml requirements-tools.in -o requirements.lock

upgrade: $(STAMP)
	$(BIN)/uv pip compile $(LOCK_ARGS) --upgrade pyproject.toml requirements-tools.in -o requirements.lock

clean:
	rm -rf $(VENV) .demo .bench .mypy_cache .ruff_cache .pytest_cache
