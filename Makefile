# hark build and test entry points. `make test` is what CI runs (via .ci/run).

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS   := -s -w -X github.com/hark-audio/hark/internal/version.Version=$(VERSION) \
             -X github.com/hark-audio/hark/internal/version.Commit=$(COMMIT)
BIN       := bin

.PHONY: all build test test-sdk test-deps vet fmt-check run emulator bench bench-cost

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/hark ./cmd/hark
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/dgemu ./cmd/dgemu

## test: install test dependencies, then vet, gofmt check, the race-enabled test suite and
## the official Deepgram SDK against the emulator (a separate module, so not in ./...).
test: test-deps vet fmt-check
	$(GO) test -race -count=1 -timeout 12m ./...
	$(MAKE) test-sdk

## test-sdk: the official Deepgram SDKs against the emulator: Go (test/sdk) and JS
## (@deepgram/sdk pinned in test/sdk/js/package-lock.json, driven by test/sdk/js_test.go).
test-sdk:
	cd test/sdk/js && npm ci --no-audit --no-fund --loglevel=error
	cd test/sdk && $(GO) test -race -count=1 ./...

test-deps:
	./scripts/install-test-deps.sh

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## run: run hark on the bundled sample against Deepgram if DEEPGRAM_API_KEY is set,
## else against the bundled emulator.
## Only transcripts go to stdout (JSON lines); the build is quiet and logs go to stderr.
run:
	@$(MAKE) -s --no-print-directory build
	@./scripts/demo.sh

## emulator: run the Deepgram emulator with the demo fixture (prints its URL).
emulator: build
	$(BIN)/dgemu --print-url --fixture testdata/demo/sample.txt

## bench: the per-frame and per-request benchmarks (figures in BENCHMARKS.md).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./vad ./capture ./uplink/... ./dgemu

## bench-cost: what hark costs to run (CPU per audio second, peak RSS: idle on a file, the
## null backend and PulseAudio, streaming next to the official Deepgram Go SDK client in the
## same run); about 5 minutes per run. BASELINE=path/to/hark measures a second build side
## by side; RUNS=n repeats (median and range); ARGS passes more flags to bench/cost.
RUNS ?= 3
bench-cost: build
	cd test/sdk && $(GO) build -o ../../$(BIN)/sdkstream ./cmd/sdkstream
	$(GO) run ./bench/cost -hark $(BIN)/hark -dgemu $(BIN)/dgemu -sdk $(BIN)/sdkstream \
		-runs $(RUNS) $(if $(BASELINE),-baseline $(BASELINE)) $(ARGS)

clean:
	rm -rf $(BIN)

# --- VAD evaluation (docs/bench-vad.md). Not part of `make test`: the set is large. ---
VADSET   ?= /tmp/hark-vad-set
VADCACHE ?= /tmp/hark-vad-cache

.PHONY: vad-set vad-eval vad-train

## vad-set: build the labelled VAD set from Debian and npm packages (needs root and the
## network; about 650 MB of packages, 3 GB of WAV, 20-30 minutes on 2 cores).
vad-set:
	SEED=1 OUT=$(VADSET) CACHE=$(VADCACHE) nice -n 19 ./eval/make_vad_set.sh

## vad-eval: leave-one-noise-type-out report on the set's held-out test part, then the
## built-in classifier on it.
vad-eval:
	nice -n 19 $(GO) run ./bench/vad -train $(VADSET)/train -lono -set $(VADSET)/test
	nice -n 19 $(GO) run ./bench/vad -set $(VADSET)/test

## vad-train: retrain the built-in classifier (vad/weights_gen.go) on the whole train part.
vad-train:
	nice -n 19 $(GO) run ./bench/vad -train $(VADSET)/train -write-go vad/weights_gen.go

# --- packaging (service helper) ---
# Cross builds, the .deb and their checks. ARCH is a Debian architecture: amd64, arm64
# (64-bit Raspberry Pi OS, Pi 3/4/5) or armhf (ARMv7 hard-float: 32-bit OS on Pi 2 and
# later; NOT Pi Zero/1, which are ARMv6). Cross builds need gcc-aarch64-linux-gnu and
# gcc-arm-linux-gnueabihf with their target C libraries (libc6-dev-arm64-cross,
# libc6-dev-armhf-cross); the checks also qemu-user-static, dpkg and systemd-analyze
# (scripts/install-test-deps.sh installs them all).
ARCH         ?= amd64
DIST         := dist
NFPM_VERSION := v2.45.2
NFPM         := $(BIN)/nfpm-$(NFPM_VERSION)/nfpm
# Debian versions must start with a digit and use '-' only before a revision:
# v1.2.3 -> 1.2.3, v1.2.3-4-gabc1234 -> 1.2.3+4.gabc1234, abc1234 (no tag) -> 0.0.0~gabc1234,
# v2.0.0-rc1 -> 2.0.0~rc1, dev -> 0.0.0~dev, *-dirty -> *+dirty.
DEB_VERSION  ?= $(shell echo '$(VERSION)' | sed -E 's/^v//; s/-(rc|alpha|beta|pre)/~\1/; s/-([0-9]+)-g([0-9a-f]+)/+\1.g\2/; s/-dirty$$/+dirty/; s/^([0-9a-f]{7,40})(\+dirty)?$$/0.0.0~g\1\2/; s/^([^0-9])/0.0.0~\1/; s/-/./g')
GOARCH_amd64 := amd64
GOARCH_arm64 := arm64
GOARCH_armhf := arm
CC_amd64     := gcc
CC_arm64     := aarch64-linux-gnu-gcc
CC_armhf     := arm-linux-gnueabihf-gcc

.PHONY: deb cross cross-check deb-check unit-check systemd-check ci-fresh clean-dist FORCE

## deb: build dist/hark_<version>_<ARCH>.deb (make deb ARCH=arm64|armhf|amd64).
deb: $(DIST)/$(ARCH)/hark $(NFPM)
	DEB_ARCH=$(ARCH) DEB_VERSION='$(DEB_VERSION)' HARK_BIN=$(DIST)/$(ARCH)/hark \
	EXTRA_DEPENDS="$$(readelf -d $(DIST)/$(ARCH)/hark | grep -q 'NEEDED.*libatomic' && echo libatomic1)" \
	$(NFPM) package --config packaging/nfpm.yaml --packager deb --target $(DIST)/

## cross: build hark for amd64, arm64 and armhf into dist/<arch>/hark.
cross: $(DIST)/amd64/hark $(DIST)/arm64/hark $(DIST)/armhf/hark

# cgo (malgo/miniaudio) needs the target's C compiler; GOARM only matters for armhf.
$(DIST)/%/hark: FORCE
	@case '$*' in amd64|arm64|armhf) ;; *) echo "unknown ARCH '$*' (amd64, arm64, armhf)"; exit 2;; esac
	CGO_ENABLED=1 GOOS=linux GOARCH=$(GOARCH_$*) GOARM=7 CC=$(CC_$*) \
		$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/hark

$(NFPM):
	GOBIN=$(CURDIR)/$(dir $(NFPM)) $(GO) install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)

## cross-check: the arm builds run `hark version` and `hark vad --csv` under qemu-user
## with output identical to the amd64 build's, and the vad package's tests pass on arm64
## and armhf, among them the arithmetic golden test (every level, feature and classifier
## score bit-identical to amd64's).
cross-check: cross
	./scripts/cross-check.sh $(DIST)
	CGO_ENABLED=0 GOARCH=arm64 $(GO) test -c -o $(DIST)/vad-arm64.test ./vad
	CGO_ENABLED=0 GOARCH=arm GOARM=7 $(GO) test -c -o $(DIST)/vad-armhf.test ./vad
	cd vad && qemu-aarch64-static $(CURDIR)/$(DIST)/vad-arm64.test -test.count 1
	cd vad && qemu-arm-static $(CURDIR)/$(DIST)/vad-armhf.test -test.count 1

## deb-check: build the amd64 .deb and check its metadata, files, modes, conffiles and
## maintainer scripts in a throwaway root.
deb-check:
	$(MAKE) deb ARCH=amd64
	./scripts/deb-check.sh $(DIST)/hark_$(DEB_VERSION)_amd64.deb

## unit-check: systemd-analyze verify and security (exposure <= 1.5) of systemd/hark.service.
unit-check:
	$(GO) test -count=1 ./systemd/

## systemd-check: the amd64 .deb installed and run under a real systemd 252 (PID 1 in a
## systemd-nspawn container booted from a cached debootstrap root): READY, STATUS, the
## credential, transcripts over MQTT, reload, watchdog, spool, exit 78, upgrade, remove,
## purge and the regressions of issue 10. Root only; skipped where nspawn is missing. About
## 4 minutes (plus a one-time debootstrap); not part of make test. See test/systemd/check.sh.
systemd-check:
	@if [ "$$(id -u)" -ne 0 ]; then echo "systemd-check: SKIP: needs root (debootstrap, systemd-nspawn)"; exit 0; fi
	$(MAKE) deb ARCH=amd64
	$(MAKE) deb ARCH=amd64 DEB_VERSION='$(DEB_VERSION)+check'
	CGO_ENABLED=0 $(GO) build -trimpath -o $(DIST)/check/dgemu ./cmd/dgemu
	test/systemd/check.sh $(DIST)/hark_$(DEB_VERSION)_amd64.deb $(DIST)/hark_$(DEB_VERSION)+check_amd64.deb $(DIST)/check/dgemu

## ci-fresh: .ci/run on a fresh machine: a minimal Debian bookworm root (debootstrap, cached)
## with only Go (this machine's /usr/local/go), gcc, git and apt, a clone of this repository's
## HEAD, and .ci/run inside it (chroot). Proves scripts/install-test-deps.sh. Root only.
ci-fresh:
	./scripts/ci-fresh.sh

clean: clean-dist
clean-dist:
	rm -rf $(DIST)

FORCE:

# --- fleet soak (issue 15). Not part of `make test`: 100 hark processes for ~10 minutes. ---
.PHONY: soak-fleet

## soak-fleet: SOAK_DEVICES (default 100) hark processes on one mosquitto and the emulator
## limited to 50 streams: a fleet-wide config change, a broker restart, more speakers than
## streams (SOAK_RUN=config,restart,overload selects parts). Figures: BENCHMARKS.md "Fleet".
SOAK_DEVICES ?= 100
soak-fleet: build
	SOAK_FLEET=1 SOAK_DEVICES=$(SOAK_DEVICES) SOAK_RUN=$(SOAK_RUN) SOAK_REPORT=$(CURDIR)/$(BIN)/soak-fleet.txt \
	SOAK_HARK_BIN=$(CURDIR)/$(BIN)/hark SOAK_DGEMU_BIN=$(CURDIR)/$(BIN)/dgemu \
		nice -n 10 $(GO) test -count=1 -timeout 60m -v -run TestFleetSoak ./test/soak
