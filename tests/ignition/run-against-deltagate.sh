#!/usr/bin/env bash
# Runs the Ignition tag historian emulator against a deltagate binary on a temporary warehouse.
# Usage: tests/ignition/run-against-deltagate.sh [dedup|strict] [extra deltagate flags...]
# DELTAGATE_BIN picks the binary (default: the release build under CARGO_TARGET_DIR or target/).
set -euo pipefail

MODE=${1:-dedup}
shift || true
HERE=$(cd "$(dirname "$0")" && pwd)
JAR=${PGJDBC_JAR:-/usr/share/java/postgresql.jar}
BIN=${DELTAGATE_BIN:-${CARGO_TARGET_DIR:-$HERE/../../target}/release/deltagate}
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DIR=$(mktemp -d)

"$BIN" --listen "127.0.0.1:$PORT" --warehouse "$DIR/warehouse" --password pw "$@" >"$DIR/log" 2>&1 &
PID=$!
stop() {
    kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
    if [ "${KEEP:-}" = 1 ]; then echo "kept $DIR"; else rm -rf "$DIR"; fi
}
trap stop EXIT
for _ in $(seq 100); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null; then break; fi
    sleep 0.1
done
echo "deltagate on 127.0.0.1:$PORT (warehouse in $DIR), mode=$MODE"

set +e
start=$(date +%s.%N)
java -cp "$JAR" "$HERE/IgnitionEmulator.java" "jdbc:postgresql://127.0.0.1:$PORT/deltagate" deltagate pw "$MODE"
status=$?
echo "emulator exit status $status after $(echo "$(date +%s.%N) - $start" | bc) s"
if [ $status != 0 ]; then echo "--- server log tail"; tail -30 "$DIR/log"; fi
exit $status
