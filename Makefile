# Every target runs from a clean checkout; see README.md.
# staticcheck 2026.2.2 is module version v0.8.2
STATICCHECK_VERSION ?= v0.8.2
GO ?= go

.PHONY: test demo lint fuzz bench ci topology

# The whole suite, on SQLite always and on PostgreSQL and MySQL/MariaDB when
# reachable (GORMMUTEX_REQUIRE_DBS=1 makes an unreachable one fail).
# The root package runs in local directory mode so that it prints which
# databases it used and the round trips per lock.
test:
	$(GO) test -race -count=1 -shuffle=on -timeout 20m
	$(GO) test -race -count=1 -timeout 10m ./cmd/... ./examples/...
	cd gocronlock && $(GO) test -race -count=1 -timeout 10m ./...

# The examples on an embedded SQLite file: no server needed.
demo:
	$(GO) run ./examples/basic
	$(GO) run ./examples/nonoverlapping

lint:
	@out=$$(gofmt -l . ) && [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	$(GO) vet ./...
	cd gocronlock && $(GO) vet ./...
	cd bench && $(GO) vet ./...
	cd topology && $(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	cd gocronlock && $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	cd bench && $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	cd topology && $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

FUZZTIME ?= 20s
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzValidateLockID -fuzztime=$(FUZZTIME) .

# Side-by-side benchmarks against django-db-mutex's algorithm, advisory
# locks, GET_LOCK and redsync; see bench/README.md.
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 .
	cd bench && $(GO) run . -out results -update-readme README.md

# Real production topologies on loopback, started and stopped by
# internal/topology (see README "Deploying"): first the scenario tests of the
# topology module, then the core suite through each topology, the topology
# named by GORMMUTEX_TOPOLOGY and reached through the DSN variables that
# cmd/topo sets. Every part runs even when an earlier one failed; the target
# fails if any did. TOPOLOGY_SKIP is passed to go test -skip.
TOPOLOGIES ?= pgbouncer-transaction pgbouncer-session postgres18 galera
TOPOLOGY_SKIP ?=
topology:
	@status=0; \
	echo "== harness"; \
	$(GO) test -race -count=1 -timeout 5m ./internal/topology/... || status=1; \
	echo "== topology scenarios"; \
	(cd topology && $(GO) test -race -count=1 -p 1 -timeout 20m -skip '$(TOPOLOGY_SKIP)' ./...) || status=1; \
	$(GO) build -o topo.bin ./internal/topology/cmd/topo || exit 1; \
	for t in $(TOPOLOGIES); do \
	  echo "== core suite on $$t"; \
	  ./topo.bin run $$t -- $(GO) test -race -count=1 -timeout 15m -skip '$(TOPOLOGY_SKIP)' . || status=1; \
	done; \
	rm -f topo.bin; exit $$status

ci: lint test topology
	$(MAKE) fuzz FUZZTIME=10s
