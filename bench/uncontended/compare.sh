#!/usr/bin/env bash
# compare.sh BASE [ROUNDS]: an uncontended gormmutex.Do, timed by this one
# program built against the commit BASE and against the working tree, the
# two builds run in turn (ROUNDS rounds, default 7, the order swapped every
# round), on SQLite and, where GORMMUTEX_POSTGRES_DSN and
# GORMMUTEX_MYSQL_DSN are set, on PostgreSQL and MySQL/MariaDB (point them
# at a scratch database: both versions' AutoMigrate run there). DUR is each
# run's length (default 1s). Prints each round and the medians.
set -euo pipefail
base=${1:?usage: compare.sh BASE [ROUNDS]}
rounds=${2:-7}
dur=${DUR:-1s}
here=$(cd "$(dirname "$0")" && pwd)
root=$(git -C "$here" rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$tmp/tree"
git -C "$root" archive "$base" | tar -x -C "$tmp/tree"
for v in base head; do
  tree=$root
  [ "$v" = base ] && tree=$tmp/tree
  mkdir -p "$tmp/$v"
  cp "$here/main.go" "$here/go.mod" "$here/go.sum" "$tmp/$v/"
  (cd "$tmp/$v" && go mod edit -replace "github.com/gormmutex/gormmutex=$tree" &&
    GOWORK=off GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 && GOWORK=off go build -o uncontended .)
done

dbs=(sqlite)
[ -n "${GORMMUTEX_POSTGRES_DSN:-}" ] && dbs+=(postgres)
[ -n "${GORMMUTEX_MYSQL_DSN:-}" ] && dbs+=(mysql)
median() { sort -n | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "uncontended Do, ops/s, $base (base) and the working tree (head), $rounds rounds of $dur"
for db in "${dbs[@]}"; do
  dsn=
  [ "$db" = postgres ] && dsn=$GORMMUTEX_POSTGRES_DSN
  [ "$db" = mysql ] && dsn=$GORMMUTEX_MYSQL_DSN
  : >"$tmp/$db.base"
  : >"$tmp/$db.head"
  for r in $(seq "$rounds"); do
    order="base head"
    [ $((r % 2)) = 0 ] && order="head base"
    line="$db round $r:"
    for v in $order; do
      read -r ops us allocs < <("$tmp/$v/uncontended" -db "$db" -dsn "$dsn" -dur "$dur")
      echo "$ops" >>"$tmp/$db.$v"
      line+=" $v $ops ops/s ($us µs, $allocs allocs)"
    done
    echo "$line"
  done
  b=$(median <"$tmp/$db.base")
  h=$(median <"$tmp/$db.head")
  awk -v db="$db" -v b="$b" -v h="$h" 'BEGIN{printf "%s: median base %d, head %d ops/s: head is %+.1f%%\n", db, b, h, (h-b)*100/b}'
done
