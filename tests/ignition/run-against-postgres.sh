#!/usr/bin/env bash
# Runs the Ignition tag historian emulator against a throwaway PostgreSQL 15 cluster.
# Usage: tests/ignition/run-against-postgres.sh [strict|dedup]   (default strict; dedup must FAIL on PostgreSQL)
# Exits with the emulator's status. Needs PostgreSQL 15 binaries, Java 17 and the Debian PgJDBC jar.
set -euo pipefail

MODE=${1:-strict}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
JAR=${PGJDBC_JAR:-/usr/share/java/postgresql.jar}
HERE=$(cd "$(dirname "$0")" && pwd)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DIR=$(mktemp -d)

# initdb/postgres refuse to run as root: use the postgres OS user then.
as_pg() {
    if [ "$(id -u)" = 0 ]; then su postgres -c "$1"; else bash -c "$1"; fi
}
if [ "$(id -u)" = 0 ]; then chown postgres "$DIR"; fi

stop() {
    as_pg "$PGBIN/pg_ctl -D $DIR/data -m fast -w stop" >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap stop EXIT

as_pg "$PGBIN/initdb -D $DIR/data -U postgres --auth=trust" >/dev/null
as_pg "$PGBIN/pg_ctl -D $DIR/data -o '-p $PORT -k $DIR -c listen_addresses=127.0.0.1' -l $DIR/log -w start" >/dev/null
echo "PostgreSQL 15 on 127.0.0.1:$PORT (data in $DIR), mode=$MODE"

set +e
start=$(date +%s.%N)
java -cp "$JAR" "$HERE/IgnitionEmulator.java" "jdbc:postgresql://127.0.0.1:$PORT/postgres" postgres postgres "$MODE"
status=$?
echo "emulator exit status $status after $(echo "$(date +%s.%N) - $start" | bc) s"
exit $status
