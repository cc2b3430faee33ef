# Weft's build. `make up` runs the local mesh; `make test` runs every test.
GO      ?= go
# grpcnotrace: grpc-go without golang.org/x/net/trace, whose html/template
# would make the linker keep every exported method (weft-proxy: 36 -> 20 MB).
GOFLAGS ?= -buildvcs=false -tags=grpcnotrace
# Static binaries: no libc, and 1.3 MB less resident memory per sidecar.
CGO_ENABLED ?= 0
export GOFLAGS CGO_ENABLED


.PHONY: all build up deps test vet unit e2e fuzz clean xds-types

all: build

build:
	@mkdir -p bin
	$(GO) build -o bin/ ./cmd/weft ./cmd/weft-proxy ./samples/bookinfo ./samples/tcpecho ./samples/grpcecho

# Run the local mesh with Bookinfo in the foreground; Ctrl-C stops it.
up: build
	./bin/weft up

vet:
	$(GO) vet ./...

# Tools the root-only network namespace tests need (Debian/Ubuntu).
deps:
	@command -v iptables >/dev/null && command -v ip >/dev/null || \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y iptables iproute2; }

# Every test, end-to-end tests included. Sized for 2 cores.
test: deps build vet
	$(GO) test -p 2 -timeout 20m -count=1 ./...
	# The HTTP/1.1 server's tests once more, on event loops (sidecars run
	# them by default), and a mesh whose sidecars serve every connection on
	# goroutines (--event-loops 0).
	WEFT_TEST_EVENT_LOOPS=2 $(GO) test -count=1 ./internal/proxy/listener/
	WEFT_EVENT_LOOPS=0 $(GO) test -count=1 -run '^(TestBookinfoRequestRouting|TestBookinfoMirroring|TestCircuitBreaking|TestOutlierDetection|TestConnectionPolicies|TestTransparentBookinfoRouting|TestMixedTrafficSoak)$$' ./e2e/

unit:
	$(GO) test -p 2 -short ./internal/... ./samples/...

e2e: build
	$(GO) test -p 1 -count=1 -timeout 15m -v ./e2e/

# Run each fuzz target briefly (the seed corpora also run in `make test`).
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 30s ./internal/config/
	$(GO) test -run '^$$' -fuzz FuzzSelect -fuzztime 30s ./internal/proxy/router/
	$(GO) test -run '^$$' -fuzz FuzzRedirect -fuzztime 30s ./internal/proxy/router/
	$(GO) test -run '^$$' -fuzz FuzzEncoded -fuzztime 30s ./internal/proxy/router/
	$(GO) test -run '^$$' -fuzz FuzzDNSPacket -fuzztime 30s ./internal/proxy/dns/
	$(GO) test -run '^$$' -fuzz FuzzApply -fuzztime 30s ./internal/proxy/model/
	$(GO) test -run '^$$' -fuzz FuzzRequestHead -fuzztime 30s ./internal/proxy/h1/
	$(GO) test -run '^$$' -fuzz FuzzResponseHead -fuzztime 30s ./internal/proxy/h1/
	$(GO) test -run '^$$' -fuzz FuzzRequestWrite -fuzztime 30s ./internal/proxy/h1/
	$(GO) test -run '^$$' -fuzz FuzzConfigDumpJSON -fuzztime 30s ./internal/proxy/admin/

clean:
	rm -rf bin

# Regenerate weft-proxy's trimmed xDS types (internal/proxy/xdsapi) after the
# proxy starts reading a new field or message; a unit test fails until then.
xds-types:
	$(GO) run ./internal/proxy/xdsapi/gen

# Weft's sidecars beside nginx and HAProxy, and the control plane at scale;
# see docs/performance.md. Writes bench/results/latest.{md,json} (JSON to
# $BENCH_OUT when set) and latency.png; the weft client sidecar's CPU profile
# goes to bin/weft-client.pprof.
.PHONY: bench bench-quick
bench: build
	$(GO) build -o bin/weftbench ./bench/cmd/weftbench
	./bin/weftbench -profile bin/weft-client.pprof -profile-server bin/weft-server.pprof

bench-quick: build
	$(GO) build -o bin/weftbench ./bench/cmd/weftbench
	./bin/weftbench -quick -profile bin/weft-client.pprof -profile-server bin/weft-server.pprof
