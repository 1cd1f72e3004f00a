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
# The TypeScript and Go clients (clients/typescript, clients/go): `make clients`.
TS_DIR := clients/typescript
TSC := $(TS_DIR)/node_modules/.bin/tsc
STAMP_TS_DEPS := $(TS_DIR)/node_modules/.package-lock.json
STAMP_GEN := $(TS_DIR)/src/gen/.generated
STAMP_TS_BUILD := $(TS_DIR)/build/.built
# The package's own build (dist/, what the web UI imports as @raypipe/client).
STAMP_TS_DIST := $(TS_DIR)/dist/.built
TS_LIB_SRC := $(shell find $(TS_DIR)/src -name '*.ts' -not -path '*/gen/*' 2>/dev/null)
TS_SRC := $(shell find $(TS_DIR)/src $(TS_DIR)/test $(TS_DIR)/examples $(TS_DIR)/conformance -name '*.ts' -not -path '*/gen/*' 2>/dev/null)
PROTO_DEPS := $(VENV)/proto-deps/google/rpc/error_details.proto
HEALTH_PROTO := $(TS_DIR)/proto/grpc/health/v1/health.proto
# Go in GOPATH mode against Debian's packaged modules: the repository is linked into a GOPATH
# of its own under .venv, at the import path of clients/go's module.
GOPATH_DIR := $(abspath $(VENV))/gopath
GO_ENV := GO111MODULE=off GOPATH=$(GOPATH_DIR):/usr/share/gocode GOFLAGS=
GO_PKG := $(GOPATH_DIR)/src/github.com/raypipe/raypipe/clients/go
STAMP_GO := $(VENV)/.go-ready
# The committed Go code (clients/go/gen) regenerated from proto/ by the root buf.gen.yaml.
STAMP_GO_GEN := $(VENV)/.go-generated
GO_BIN := $(abspath $(VENV))/gobin
GO_SRC := $(shell find clients/go -name '*.go' 2>/dev/null)
# The web UI (clients/web, React + Vite), built into clients/web/dist, which raypipe serve's
# HTTP port serves (docs/http.md).
WEB_DIR := clients/web
STAMP_WEB_DEPS := $(WEB_DIR)/node_modules/.package-lock.json
WEB_SRC := $(shell find $(WEB_DIR)/src -type f 2>/dev/null)
RAYPIPE_ADDRESS ?= localhost:50051
RAYPIPE_HTTP_ADDRESS ?=

.PHONY: curl install clients proto proto-release lint test run bench bench-quick clean postgres graphviz chromium conformance web

# Python, the generated code, buf, Graphviz and the web UI (with the TypeScript client it
# imports; no Go needed).
install: $(STAMP_DEPS) $(STAMP_PROTO) $(BUF) graphviz $(WEB_DIR)/dist/index.html

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

# Every language from proto/: Python (grpcio-tools), Go (buf.gen.yaml) and TypeScript
# (clients/typescript/buf.gen.yaml).
proto: $(STAMP_DEPS)
	rm -f $(STAMP_PROTO) $(STAMP_GEN) $(STAMP_GO_GEN)
	$(MAKE) $(STAMP_PROTO) $(STAMP_GEN) $(STAMP_GO_GEN)

$(STAMP_PROTO): $(PROTO_SRC) $(STAMP_DEPS) $(HEALTH_PROTO)
	mkdir -p $(GEN_DIR)/raypipe/v1
	find $(GEN_DIR)/raypipe/v1 -name '*_pb2*.py*' -delete
	$(PY) -m grpc_tools.protoc -I proto \
		--python_out=$(GEN_DIR) --pyi_out=$(GEN_DIR) --grpc_python_out=$(GEN_DIR) \
		$(PROTO_SRC)
	# The HTTP port's Connect stubs (control_plane/http_gen), importing the messages from
	# where they live: raypipe.v1 and grpc_health.v1.
	rm -rf $(VENV)/connect-gen && mkdir -p $(VENV)/connect-gen
	$(PY) -m grpc_tools.protoc -I proto -I $(TS_DIR)/proto \
		--plugin=protoc-gen-connectrpc=$(VENV)/bin/protoc-gen-connectrpc \
		--connectrpc_out=$(VENV)/connect-gen --connectrpc_opt=protobuf=google \
		$(filter %_service.proto,$(PROTO_SRC)) grpc/health/v1/health.proto
	find control_plane/http_gen -name '*_connect.py' -delete
	for f in $(VENV)/connect-gen/raypipe/v1/*_connect.py; do \
		sed 's/^from \.\([a-z_]*_pb2\) import/from raypipe.v1.\1 import/' $$f > control_plane/http_gen/$$(basename $$f); done
	sed 's/^from \.health_pb2 import/from grpc_health.v1.health_pb2 import/' \
		$(VENV)/connect-gen/grpc/health/v1/health_connect.py > control_plane/http_gen/health_connect.py
	touch $@

# The TypeScript and Go clients: their dependencies (npm ci; Debian's Go packages through apt),
# generated code, the TypeScript build (dist/ for the package, build/ for tests, examples and
# the conformance runner) and the Go example and conformance binaries in .venv/gobin.
clients: install $(STAMP_TS_BUILD) $(GO_BIN)/conformance

$(STAMP_TS_DEPS): $(TS_DIR)/package.json $(TS_DIR)/package-lock.json
	npm ci --silent --no-audit --no-fund --prefix $(TS_DIR) >/dev/null

$(STAMP_GO): scripts/ensure_go.sh
	bash scripts/ensure_go.sh
	mkdir -p $(GOPATH_DIR)/src/github.com/raypipe
	ln -sfn $(abspath .) $(GOPATH_DIR)/src/github.com/raypipe/raypipe
	touch $@

# google.rpc's Status, ErrorInfo and BadRequest, from the googleapis-common-protos wheel.
$(PROTO_DEPS): $(STAMP_DEPS)
	mkdir -p $(dir $@)
	cp "$$($(PY) -c 'import google.rpc.status_pb2 as m, os; print(os.path.dirname(m.__file__))')"/{status,error_details}.proto $(dir $@)

# TypeScript: raypipe.v1, grpc.health.v1 and google.rpc (protoc-gen-es from the npm
# dependencies; no Go).
$(STAMP_GEN): $(PROTO_SRC) $(TS_DIR)/buf.gen.yaml $(HEALTH_PROTO) $(STAMP_TS_DEPS) $(PROTO_DEPS) | $(BUF)
	rm -rf $(TS_DIR)/src/gen
	$(BUF) generate --template $(TS_DIR)/buf.gen.yaml
	touch $@

# Go: raypipe.v1 with Debian's protoc-gen-go and protoc-gen-go-grpc (committed code).
$(STAMP_GO_GEN): $(PROTO_SRC) buf.gen.yaml $(STAMP_GO) | $(BUF)
	find clients/go/gen -name '*.pb.go' -delete 2>/dev/null || true
	$(BUF) generate
	touch $@

$(STAMP_TS_DIST): $(STAMP_GEN) $(TS_LIB_SRC) $(TS_DIR)/tsconfig.build.json $(TS_DIR)/tsconfig.base.json
	cd $(TS_DIR) && node_modules/.bin/tsc -p tsconfig.build.json
	touch $@

$(STAMP_TS_BUILD): $(STAMP_TS_DIST) $(TS_SRC) $(wildcard $(TS_DIR)/tsconfig*.json)
	cd $(TS_DIR) && node_modules/.bin/tsc -p tsconfig.json
	touch $@

$(GO_BIN)/conformance: $(STAMP_GO_GEN) $(GO_SRC)
	mkdir -p $(GO_BIN)
	cd $(GO_PKG) && $(GO_ENV) go build -o $(GO_BIN)/ ./conformance ./examples/quickstart

# The web UI: its npm dependencies (@raypipe/client is clients/typescript, linked, so its dist/
# first), then `vite build` (after tsc --noEmit) into clients/web/dist.
web: $(WEB_DIR)/dist/index.html

$(STAMP_WEB_DEPS): $(WEB_DIR)/package.json $(WEB_DIR)/package-lock.json $(STAMP_TS_DIST)
	npm ci --silent --no-audit --no-fund --prefix $(WEB_DIR) >/dev/null

$(WEB_DIR)/dist/index.html: $(STAMP_WEB_DEPS) $(WEB_SRC) $(WEB_DIR)/index.html $(WEB_DIR)/vite.config.ts \
		$(WEB_DIR)/tsconfig.json
	cd $(WEB_DIR) && npm run build --silent
	touch $@

# The conformance scenario (tests/conformance/scenario.json) with the Python SDK, the
# TypeScript client and the Go client against a running server: a table of steps x languages
# (with RAYPIPE_HTTP_ADDRESS=http://host:port, the TypeScript client over Connect too).
conformance: clients
	$(PY) -m tests.conformance.run_all --address $(RAYPIPE_ADDRESS) --http-address "$(RAYPIPE_HTTP_ADDRESS)"

# ruff, mypy, the import contracts of docs/architecture.md (import-linter), buf lint and
# breaking, TypeScript strict (tsc --noEmit) of the client and the web UI, and gofmt + go vet
# of the Go client.
lint: install clients
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	cd proto && ../$(BUF) lint
	cd $(TS_DIR) && node_modules/.bin/tsc -p tsconfig.json --noEmit
	cd $(WEB_DIR) && node_modules/.bin/tsc -p tsconfig.json --noEmit
	@test -z "$$(gofmt -l clients/go)" || { echo "gofmt: these need formatting:"; gofmt -l clients/go; exit 1; }
	cd $(GO_PKG) && $(GO_ENV) go vet ./...
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

# curl for the test that runs docs/http.md's examples (apt-get where it can).
curl:
	bash scripts/ensure_debian_package.sh ensure_curl curl curl \
		"install curl yourself (apt-get install curl): the docs/http.md test needs it"

# Debian's Chromium for the tests that drive a real browser (apt-get where it can).
chromium:
	bash scripts/ensure_chromium.sh

test: install clients postgres chromium curl
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
	rm -rf $(TS_DIR)/node_modules $(TS_DIR)/src/gen $(TS_DIR)/dist $(TS_DIR)/build
	rm -rf $(WEB_DIR)/node_modules $(WEB_DIR)/dist
