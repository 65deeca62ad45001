# The two commands of this repository:
#   make book   run every chapter (profile "book"), build the HTML book, browser check
#   make test   unit tests, every chapter at smoke size and its gpu code path at a few steps
#               (profile gpu-dry, not rendered), HTML build, browser check
# Every step is idempotent: the venv is reinstalled only when requirements.txt
# or pyproject.toml change, and a chapter is re-executed only when its source,
# ganlib or the pins changed (scripts/run_chapters.py --force reruns anyway).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUILD := _build
TEST_BUILD := _build/test
# chapters executed at once (each in its own kernel, torch pinned to one CPU thread): one per core;
# a chapter marked "ganlib": {"cores": "all"} (book.map_processes) runs alone, on every core
# the others start longest first (last build's times, else the notebook's "book_seconds" hint)
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
REQ_HASH := $(shell cat requirements.txt pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)

.PHONY: help venv chromium test book student clean distclean

help:
	@echo "make book   - run every chapter with the 'book' profile, build the HTML (_build/site/_build/html), Chromium check"
	@echo "make test   - pytest, every chapter with the 'smoke' and 'gpu-dry' profiles, HTML build (-W), Chromium check"
	@echo "make student - student versions of the chapters in _build/student/"
	@echo "make clean  - remove _build/ (make distclean also removes .venv/)"

venv: $(STAMP) chromium

$(STAMP):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q -e . --no-deps
	$(PY) -m ipykernel install --sys-prefix --name ganbook --display-name "Python 3 (ganbook)" >/dev/null
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "venv ready: $(VENV) (requirements hash $(REQ_HASH))"

# Debian's chromium drives the HTML check (Playwright, never `playwright install`).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	  else \
	    echo "note: /usr/bin/chromium is missing and we are not root; 'make test' needs it (apt-get install -y chromium)"; \
	  fi; \
	fi

test: venv
	$(PY) -m pytest -q tests
	$(PY) scripts/run_chapters.py --jobs $(JOBS) --profile smoke --build-dir $(TEST_BUILD)
	$(PY) scripts/run_chapters.py --jobs $(JOBS) --profile gpu-dry --build-dir $(TEST_BUILD)/gpu-dry
	$(PY) scripts/run_chapters.py --profile gpu-dry --only 12 -p DATASET mnist --build-dir $(TEST_BUILD)/gpu-dry-mnist
	$(PY) scripts/build_html.py --build-dir $(TEST_BUILD)
	$(PY) scripts/check_html.py --build-dir $(TEST_BUILD)
	$(PY) scripts/make_student_version.py --out-dir $(TEST_BUILD)/student

book: venv
	$(PY) scripts/run_chapters.py --jobs $(JOBS) --profile book --build-dir $(BUILD)
	$(PY) scripts/build_html.py --build-dir $(BUILD)
	$(PY) scripts/check_html.py --build-dir $(BUILD)
	@echo "The book is in $(CURDIR)/$(BUILD)/site/_build/html (open index.html)"

student: venv
	$(PY) scripts/make_student_version.py --out-dir $(BUILD)/student

clean:
	rm -rf $(BUILD)

distclean: clean
	rm -rf $(VENV)
