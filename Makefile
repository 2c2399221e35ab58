# Mirrorkit. `make demo` runs the main job on a fresh machine; `make test` runs
# every test (it installs what the tests need first).
GO      ?= go
BIN     := bin/mirror
PKGS    := ./...

.PHONY: all build demo deps test test-short bench lint fmt clean attack

all: build

build:
	$(GO) build -o $(BIN) ./cmd/mirror

# A throwaway home and mirror: init, genkey, grant, package, publish,
# install, and run the installed component.
demo: build
	bash scripts/demo.sh $(abspath $(BIN))

# The OCI tests need a real registry: Debian's docker-registry, installed
# here (with sudo when not root) and never from inside the tests.
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)

deps:
	$(GO) mod download
	cd examples && $(GO) mod download
	command -v docker-registry >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry)

# A missing registry fails the OCI tests here instead of skipping them.
test: export MIRROR_REQUIRE_REGISTRY := 1
test: deps lint
	$(GO) test -race -count=1 -timeout 30m $(PKGS)
	cd examples && $(GO) vet ./... && $(GO) test -race -count=1 -timeout 10m ./...

test-short:
	$(GO) test -short -count=1 $(PKGS)

# Benchmarks only, never timed tests: MB/s and peak memory beside cp and tar.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 3x ./core/... ./plugins/... ./sdk/...
	bash scripts/bench.sh $(abspath $(BIN))
	bash scripts/bench-serve.sh $(abspath $(BIN))
	bash scripts/bench-clone.sh $(abspath $(BIN))
	bash scripts/bench-oci.sh $(abspath $(BIN))

# The attack and fault suite under -race, and its report table
# (bin/attack-report.md); see docs/security.md.
attack:
	bash scripts/attack.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
