# raypipe: every target a newcomer needs. `make run` and `make test` install what they need.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
BUF := $(VENV)/node/node_modules/.bin/buf
PROTO_SRC := $(shell find proto -name '*.proto' 2>/dev/null)
GEN_DIR := clients/python
STAMP_DEPS := $(VENV)/.deps-installed
STAMP_PROTO := $(GEN_DIR)/raypipe/v1/.generated
PYTEST_ARGS ?=

.PHONY: install proto proto-release lint test run bench bench-quick clean postgres graphviz chromium

install: $(STAMP_DEPS) $(STAMP_PROTO) $(BUF) graphviz

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel

# torch first, pinned through constraints.txt to the CPU build on this machine's disk, so that
# nothing later pulls a multi-GB CUDA build; GPU users install their own torch>=2.1.
# The SDK and CLI (clients/python, the distribution `raypipe`) and the server (the root,
# `raypipe-server`), both editable, in one resolve.
$(STAMP_DEPS): $(PY) pyproject.toml clients/python/pyproject.toml constraints.txt
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e ./clients/python -e '.[dev]'
	touch $@

$(BUF): | $(PY)
	mkdir -p $(VENV)/node
	npm install --silent --no-audit --no-fund --prefix $(VENV)/node @bufbuild/buf@1.75.0 >/dev/null

proto: $(STAMP_DEPS)
	rm -f $(STAMP_PROTO)
	$(MAKE) $(STAMP_PROTO)

$(STAMP_PROTO): $(PROTO_SRC) $(STAMP_DEPS)
	mkdir -p $(GEN_DIR)/raypipe/v1
	find $(GEN_DIR)/raypipe/v1 -name '*_pb2*.py*' -delete
	$(PY) -m grpc_tools.protoc -I proto \
		--python_out=$(GEN_DIR) --pyi_out=$(GEN_DIR) --grpc_python_out=$(GEN_DIR) \
		$(PROTO_SRC)
	touch $@

# ruff, mypy, the import contracts of docs/architecture.md (import-linter) and buf lint.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	cd proto && ../$(BUF) lint
	cd proto && ../$(BUF) breaking --against released.binpb
	@cd proto && ../$(BUF) build --exclude-source-info -o - | cmp -s - released.binpb || \
		{ echo "proto/released.binpb is not the contract of proto/: after review of the change,"; \
		  echo "run 'make proto-release' and commit it with the .proto files"; exit 1; }

# The contract `buf breaking` guards (proto/released.binpb, a buf image): refreshed with each
# reviewed change of proto/, committed with it. `make lint` fails on a change that breaks the
# image (a field renumbered, retyped, removed) and on an image not refreshed.
proto-release: $(BUF)
	cd proto && ../$(BUF) breaking --against released.binpb
	cd proto && ../$(BUF) build --exclude-source-info -o released.binpb

postgres:
	bash scripts/ensure_postgres.sh

# Graphviz's dot for `raypipe graph -o svg|png` (apt-get where it can; a hint otherwise).
graphviz:
	bash scripts/ensure_graphviz.sh

# Debian's Chromium for the tests that drive a real browser (apt-get where it can).
chromium:
	bash scripts/ensure_chromium.sh

test: install postgres chromium
	RAYPIPE_TEST_POSTGRES_URL=$$(bash scripts/ensure_postgres.sh --url) \
		$(PY) -m pytest $(PYTEST_ARGS)

run: install
	$(PY) examples/demo.py

bench: install
	$(PY) -m tests.bench

# Every benchmark at small sizes, one repetition: what CI runs so none of them rots.
bench-quick: install
	BENCH_QUICK=1 $(PY) -m tests.bench

clean:
	rm -rf $(VENV) $(GEN_DIR)/raypipe/v1/*_pb2*.py* $(STAMP_PROTO)
