# spoki: make demo (the lab, end to end) and make test (everything, as root).
GO      ?= go
BIN     := bin/spoki
export SPOKI_BIN := $(CURDIR)/$(BIN)

# What `spoki version` reports. The toolchain stamps the commit itself
# (-buildvcs=auto) where .git is a directory; the -X values stand in for it
# in a git worktree or a tree without git (internal/version).
VPKG        := github.com/spoki-telescope/spoki/internal/version
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
COMMIT      := $(shell git rev-parse HEAD 2>/dev/null)
COMMIT_TIME := $(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null)
MODIFIED    := $(shell test -n "$$(git status --porcelain 2>/dev/null)" && echo true || echo false)
LDFLAGS     := -X $(VPKG).Version=$(VERSION) -X $(VPKG).Commit=$(COMMIT) -X $(VPKG).CommitTime=$(COMMIT_TIME) -X $(VPKG).Modified=$(MODIFIED)

.PHONY: all build demo test bench vet fmt clean deb

all: build

build:
	$(GO) build -buildvcs=auto -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/spoki

# The Debian package bin/spoki_VERSION_ARCH.deb (VERSION from git describe,
# made a Debian version; 0.0.0~dev without git), built by nfpm as a Go
# library (deploy/debpkg, internal/debpkg): no packaging tool needed.
deb: build
	$(GO) run ./deploy/debpkg --bin $(BIN) --version "$(VERSION)" --out $(dir $(BIN))

# The built-in lab: two namespaces, the telescope in one, the project's own
# clients in the other; prints what was recorded and removes everything.
# Then three scenarios (a ZMap SYN, a two-phase HTTP exploit with a wget
# downloader, a bad-cookie ACK), each in a lab of its own.
demo: build
	./$(BIN) lab demo
	./$(BIN) scenario run scenarios/scanners/zmap-syn.pkt scenarios/twophase/http-wget.pkt scenarios/cookie/bad-cookie-ack.pkt

# Every test. The lab tests need root (CAP_NET_ADMIN) and the Debian tools
# .ci/run installs; under CI=true a missing capability fails them.
test: build
	@# No test or script may refer to a path outside the repository: a
	@# fresh clone with nothing beside it must pass (internal/pathcheck).
	$(GO) test -count=1 ./internal/pathcheck
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) test -race -count=1 -timeout 20m ./...

# Benchmarks that print figures: the front end's per-SYN cost, the writers,
# the 10 s spoofed flood against spoki and the raw TUN echo side by side, and
# the attack mix (irregular flood, port sweep, slowloris, two-phase needle,
# a second host) with its memory and service targets.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./netstack ./records/...
	$(GO) test -run '^$$' -bench Flood -benchtime 1x -timeout 10m -v ./test
	$(GO) test -run '^$$' -bench AttackMix -benchtime 1x -timeout 5m -v ./test

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin
