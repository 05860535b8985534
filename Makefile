# hark build and test entry points. `make test` is what CI runs (via .ci/run).

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS   := -s -w -X github.com/hark-audio/hark/internal/version.Version=$(VERSION) \
             -X github.com/hark-audio/hark/internal/version.Commit=$(COMMIT)
BIN       := bin

.PHONY: all build test test-deps vet fmt-check lint run demo emulator clean bench

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/hark ./cmd/hark
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/dgemu ./cmd/dgemu

## test: install test dependencies, then vet, gofmt check and the race-enabled test suite.
test: test-deps vet fmt-check
	$(GO) test -race -count=1 -timeout 12m ./...

test-deps:
	./scripts/install-test-deps.sh

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## run: run hark on the bundled sample against Deepgram if DEEPGRAM_API_KEY is set,
## else against the bundled emulator.
run: build
	./scripts/demo.sh

clean:
	rm -rf $(BIN)
