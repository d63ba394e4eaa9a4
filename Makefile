# Two entry points for a fresh machine: `make demo` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: demo test install lint bench clean explorer

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

$(EXPLORER_NPM): explorer/package.json explorer/package-lock.json
	cd explorer && npm ci --no-audit --no-fund
	touch $(EXPLORER_NPM)

$(EXPLORER_OUT): $(EXPLORER_NPM) explorer/build.mjs $(wildcard explorer/src/*)
	cd explorer && npm run build
	touch $(EXPLORER_OUT)

explorer: $(EXPLORER_OUT)

demo: $(STAMP) $(EXPLORER_OUT)
	$(VENV)/bin/riskgraph demo

test: $(STAMP) $(EXPLORER_OUT)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check graph gnn api loaders limits tests bench
	$(VENV)/bin/mypy graph gnn api loaders limits

clean:
	rm -rf $(VENV) .riskgraph .pytest_cache
