# Two entry points for a fresh machine: `make demo` and `make test`.
# Prerequisites the repository cannot install: Python 3.11, make, npm (Node.js), and
# for the browser tests Debian's Chromium, which `make test` installs with apt-get when
# it can (as root, or through sudo without a password) and otherwise says how.
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

PORT ?= 8000

.PHONY: demo test install lint bench clean explorer browser npm

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU build of torch, pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The investigator explorer (served by the API at /explore): npm packages pinned by
# explorer/package-lock.json, bundled into api/static/explore/ when its sources change.
EXPLORER_NPM := explorer/node_modules/.installed
EXPLORER_OUT := api/static/explore/index.html

npm:
	@command -v npm >/dev/null || { echo "npm (Node.js 18 or later) is needed to build the \
	explorer page: install it (Debian: apt-get install nodejs npm) and run make again" >&2; \
	exit 1; }

$(EXPLORER_NPM): explorer/package.json explorer/package-lock.json | npm
	cd explorer && npm ci --no-audit --no-fund
	touch $(EXPLORER_NPM)

$(EXPLORER_OUT): $(EXPLORER_NPM) explorer/build.mjs $(wildcard explorer/src/*)
	cd explorer && npm run build
	touch $(EXPLORER_OUT)

explorer: $(EXPLORER_OUT)

# The browser tests drive Debian's Chromium (no browser is ever downloaded), with CJK
# fonts for the Chinese texts.
CHROMIUM := /usr/bin/chromium
BROWSER_PACKAGES := chromium fonts-noto-cjk

$(CHROMIUM):
	@if ! command -v apt-get >/dev/null; then \
	  echo "make test needs Chromium at $(CHROMIUM) for the browser tests and this" \
	    "machine has no apt-get: install Chromium there (and a CJK font) and run" \
	    "make test again" >&2; exit 1; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(BROWSER_PACKAGES); \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
	  sudo -n apt-get update -q && \
	    sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(BROWSER_PACKAGES); \
	else \
	  echo "make test needs Chromium at $(CHROMIUM) for the browser tests; installing" \
	    "it takes root: run  sudo apt-get install -y $(BROWSER_PACKAGES)  then" \
	    "make test again" >&2; exit 1; \
	fi

browser: $(CHROMIUM)

demo: npm $(STAMP) $(EXPLORER_OUT)
	$(VENV)/bin/riskgraph demo --port $(PORT)

# What the machine needs is checked first, before minutes of installing.
test: $(CHROMIUM) npm $(STAMP) $(EXPLORER_OUT)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check graph gnn api loaders limits tests bench
	$(VENV)/bin/mypy graph gnn api loaders limits

clean:
	rm -rf $(VENV) .riskgraph .pytest_cache
