# Weft's build. `make up` runs the local mesh; `make test` runs every test.
GO      ?= go
GOFLAGS ?= -buildvcs=false
export GOFLAGS

BINARIES := bin/weft bin/weft-proxy bin/bookinfo

.PHONY: all build up test vet unit e2e fuzz clean

all: build

build:
	@mkdir -p bin
	$(GO) build -o bin/ ./cmd/weft ./cmd/weft-proxy ./samples/bookinfo

# Run the local mesh with Bookinfo in the foreground; Ctrl-C stops it.
up: build
	./bin/weft up

vet:
	$(GO) vet ./...

# Every test, end-to-end tests included. Sized for 2 cores.
test: build vet
	$(GO) test -p 2 -timeout 20m -count=1 ./...

unit:
	$(GO) test -p 2 -short ./internal/... ./samples/...

e2e: build
	$(GO) test -p 1 -count=1 -timeout 15m -v ./e2e/

# Run each fuzz target briefly (the seed corpora also run in `make test`).
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 30s ./internal/config/
	$(GO) test -run '^$$' -fuzz FuzzSelect -fuzztime 30s ./internal/proxy/router/

clean:
	rm -rf bin
