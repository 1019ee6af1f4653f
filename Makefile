# Every target runs from a clean checkout; see README.md.
# staticcheck 2026.2.2 is module version v0.8.2
STATICCHECK_VERSION ?= v0.8.2
GO ?= go

.PHONY: test demo lint fuzz bench benchcmp ci oldgo topology proxycheck api apicheck release

# Every module, each with its own go.mod. The public ones are published;
# topology and tools are this repository's own (tests through topologies,
# the release checks) and need the newest Go only.
PUBLIC_MODULES = . gocronlock robfigcronlock otelgormmutex
MODULES = $(PUBLIC_MODULES) bench bench/uncontended
ALL_MODULES = $(MODULES) topology tools
# The version the release checks lay the modules out at.
VERSION ?= v0.1.0
# The oldest Go that the README promises; every go.mod says the same.
OLDEST_GO ?= go1.25.0

# The whole suite, on SQLite always and on PostgreSQL and MySQL/MariaDB when
# reachable (GORMMUTEX_REQUIRE_DBS=1 makes an unreachable one fail).
# The root package runs in local directory mode so that it prints which
# databases it used and the round trips per lock.
test:
	$(GO) test -race -count=1 -shuffle=on -timeout 20m
	$(GO) test -race -count=1 -timeout 10m ./internal/... ./cmd/... ./examples/...
	@for m in $(filter-out . topology,$(ALL_MODULES)); do \
	  echo "cd $$m && $(GO) test -race -count=1 -timeout 10m ./..."; \
	  (cd $$m && $(GO) test -race -count=1 -timeout 10m ./...) || exit 1; \
	done

# Each capability once, on a SQLite file in a temporary folder: no server
# needed. A lock, an election handing over, a semaphore capping, a gocron
# job that runs once per tick across schedulers, the OpenTelemetry
# Observer's metrics; then the other examples.
demo:
	$(GO) run ./examples/basic
	$(GO) run ./examples/election
	$(GO) run ./examples/semaphore
	cd gocronlock && $(GO) run ./examples/schedulers -ticks 3
	cd otelgormmutex && $(GO) run ./examples/prometheus -addr 127.0.0.1:0 -print 3
	$(GO) run ./examples/nonoverlapping
	$(GO) run ./examples/shutdown -stop-after 2s
	$(GO) run ./examples/migrate
	$(GO) run ./examples/deployonce
	cd robfigcronlock && $(GO) run ./examples/processes

lint:
	@out=$$(gofmt -l . ) && [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	@for m in $(ALL_MODULES); do \
	  echo "cd $$m && go vet ./... && staticcheck ./..."; \
	  (cd $$m && $(GO) vet ./... && $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...) || exit 1; \
	done
	$(MAKE) apicheck

# The exported API of every public module against the baseline in api/:
# a removed or changed identifier fails unless CHANGELOG.md's newest entry
# names it under "Breaking", and an addition must be named in that entry.
apicheck:
	cd tools && $(GO) run ./apicheck -repo .. check

# Records the exported API of every public module in api/, after a
# release or a change CHANGELOG.md lists.
api:
	cd tools && $(GO) run ./apicheck -repo .. write

# Every public module laid out in a file:// module proxy at $(VERSION) and
# fetched from it by README.md's install lines, in fresh modules outside
# the repository (see RELEASING.md). Checks the committed tree (HEAD).
proxycheck:
	cd tools && $(GO) run ./proxycheck -repo .. -version $(VERSION)

# The checks before tagging $(VERSION) (see RELEASING.md): a clean tree, no
# tag of it yet, CHANGELOG.md's dated entry, the go.mod requirements and
# otelgormmutex.Version; then lint (the API check included) and proxycheck
# at that version; then the same first checks again, and the tag and push
# commands are printed, in order. Nothing is tagged or pushed.
release:
	cd tools && $(GO) run ./release -repo .. -version $(VERSION) check
	$(MAKE) lint
	$(MAKE) proxycheck VERSION=$(VERSION)
	cd tools && $(GO) run ./release -repo .. -version $(VERSION) plan

FUZZTIME ?= 20s
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzValidateLockID -fuzztime=$(FUZZTIME) .

# Side-by-side benchmarks against django-db-mutex's algorithm, advisory
# locks, GET_LOCK and redsync; see bench/README.md. Then the leader
# election's renewal cost and failover time (bench/election).
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 .
	cd bench && $(GO) run . -out results -update-readme README.md
	cd bench && $(GO) run ./election -out results/election.md

# An uncontended Do timed by one program built against BASE and against the
# working tree, run in turn (bench/uncontended/compare.sh): the comparison
# across commits, which bench/ cannot make because its own harness changes.
BASE ?= c19d5a8
benchcmp:
	bench/uncontended/compare.sh $(BASE)

# The oldest supported Go (the toolchain is fetched through the Go module
# proxy, once): every go.mod states it, every module builds and passes vet
# with it, every test compiles, and the scheduler modules' tests pass.
oldgo:
	@for m in $(MODULES); do \
	  grep -qx 'go $(patsubst go%,%,$(OLDEST_GO))' $$m/go.mod || { echo "$$m/go.mod does not say go $(patsubst go%,%,$(OLDEST_GO))"; exit 1; }; \
	done
	@for m in $(MODULES); do \
	  echo "== $$m with $(OLDEST_GO)"; \
	  (cd $$m && GOTOOLCHAIN=$(OLDEST_GO) $(GO) build ./... && GOTOOLCHAIN=$(OLDEST_GO) $(GO) vet ./... \
	    && GOTOOLCHAIN=$(OLDEST_GO) $(GO) test -count=1 -run '^$$' ./... >/dev/null) || exit 1; \
	done
	cd gocronlock && GOTOOLCHAIN=$(OLDEST_GO) $(GO) test -count=1 -timeout 10m ./...
	cd robfigcronlock && GOTOOLCHAIN=$(OLDEST_GO) $(GO) test -count=1 -timeout 10m ./...

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

ci: lint test oldgo topology
	$(MAKE) fuzz FUZZTIME=10s
